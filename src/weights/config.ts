import { ConfigError } from '../errors.js';

/**
 * The parts of a Hugging Face `nomic_bert` `config.json` that affect inference,
 * under their Hugging Face names, plus values derived from them.
 */
export interface NomicBertConfig {
  readonly n_embd: number;
  readonly n_head: number;
  readonly n_layer: number;
  readonly n_inner: number;
  readonly n_positions: number;
  readonly vocab_size: number;
  readonly pad_vocab_size_multiple: number;
  readonly type_vocab_size: number;
  readonly layer_norm_epsilon: number;
  readonly rotary_emb_base: number;
  /** Dynamic NTK scaling factor; null switches the scaling off. */
  readonly rotary_scaling_factor: number | null;
  readonly max_trained_positions: number;

  /** Derived: `n_embd / n_head`. */
  readonly headDim: number;
  /** Derived: rows of the word-embedding matrix, `vocab_size` rounded up to `pad_vocab_size_multiple`. */
  readonly paddedVocabSize: number;
  /** Derived: SwiGLU width as upstream computes it, `n_inner` rounded up to a multiple of 256. */
  readonly ffnWidth: number;
}

type Json = Record<string, unknown>;

/**
 * Variants of the upstream code that this implementation does not compute.
 * Each entry: field, the value that matches our implementation, why.
 */
const REQUIRED_VALUES: readonly [string, unknown, string][] = [
  ['prenorm', false, 'only post-norm blocks are implemented'],
  ['parallel_block', false, 'only sequential attention/MLP blocks are implemented'],
  ['causal', false, 'the encoder is bidirectional'],
  ['use_rms_norm', false, 'only LayerNorm is implemented'],
  ['rotary_emb_fraction', 1, 'rotary embeddings must cover the whole head'],
  ['rotary_emb_interleaved', false, 'only the non-interleaved (rotate-half) rotary layout is implemented'],
  ['rotary_emb_scale_base', null, 'xPos rotary scaling is not implemented'],
  ['qkv_proj_bias', false, 'linear biases are not implemented (nomic-embed-text-v1.5 has none)'],
  ['mlp_fc1_bias', false, 'linear biases are not implemented (nomic-embed-text-v1.5 has none)'],
  ['mlp_fc2_bias', false, 'linear biases are not implemented (nomic-embed-text-v1.5 has none)'],
  ['scale_attn_by_inverse_layer_idx', false, 'per-layer attention scaling is not implemented'],
  ['scale_attn_weights', true, 'attention scores are always scaled by 1/sqrt(head size)'],
  ['activation_function', 'swiglu', 'only the SwiGLU MLP is implemented'],
];

export interface ConfigOverrides {
  /** Replaces `rotary_scaling_factor`, as upstream's `from_pretrained(..., rotary_scaling_factor=2)` does. */
  readonly rotary_scaling_factor?: number | null;
}

/** Parses a `config.json` object; `source` names it in errors. */
export function parseConfig(raw: unknown, overrides: ConfigOverrides = {}): NomicBertConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('(root)', raw, 'config.json must hold a JSON object');
  }
  const json = raw as Json;
  if (json.model_type !== undefined && json.model_type !== 'nomic_bert') {
    throw new ConfigError('model_type', json.model_type, 'only "nomic_bert" models are supported');
  }
  for (const [field, wanted, reason] of REQUIRED_VALUES) {
    // Absent fields take upstream's defaults, which are the supported values.
    if (field in json && json[field] !== wanted) throw new ConfigError(field, json[field], reason);
  }

  const n_embd = positiveInteger(json, 'n_embd');
  const n_head = positiveInteger(json, 'n_head');
  if (n_embd % n_head !== 0) throw new ConfigError('n_head', n_head, `must divide n_embd (${n_embd})`);
  const headDim = n_embd / n_head;
  if (headDim % 2 !== 0) throw new ConfigError('n_head', n_head, `head size ${headDim} must be even for rotary`);
  const vocab_size = positiveInteger(json, 'vocab_size');
  const pad_vocab_size_multiple = positiveInteger(json, 'pad_vocab_size_multiple', 1);
  const n_inner = positiveInteger(json, 'n_inner', 4 * n_embd);
  const max_trained_positions = positiveInteger(json, 'max_trained_positions', 2048);

  const rotary_scaling_factor =
    overrides.rotary_scaling_factor !== undefined
      ? checkScaling('rotary_scaling_factor (option)', overrides.rotary_scaling_factor)
      : checkScaling('rotary_scaling_factor', json.rotary_scaling_factor ?? null);

  return Object.freeze({
    n_embd,
    n_head,
    n_layer: positiveInteger(json, 'n_layer'),
    n_inner,
    n_positions: positiveInteger(json, 'n_positions', 2048),
    vocab_size,
    pad_vocab_size_multiple,
    type_vocab_size: positiveInteger(json, 'type_vocab_size', 2),
    layer_norm_epsilon: positiveNumber(json, 'layer_norm_epsilon', 1e-5),
    rotary_emb_base: positiveNumber(json, 'rotary_emb_base', 10000),
    rotary_scaling_factor,
    max_trained_positions,
    headDim,
    paddedVocabSize: Math.ceil(vocab_size / pad_vocab_size_multiple) * pad_vocab_size_multiple,
    // Upstream: hidden_features = (n_inner + 255) // 256 * 256.
    ffnWidth: Math.ceil(n_inner / 256) * 256,
  });
}

function checkScaling(field: string, value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) {
    throw new ConfigError(field, value, 'must be null or a number >= 1');
  }
  return value;
}

function positiveInteger(json: Json, field: string, fallback?: number): number {
  const value = json[field] ?? fallback;
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw new ConfigError(field, json[field], 'must be a positive integer');
  }
  return value as number;
}

function positiveNumber(json: Json, field: string, fallback: number): number {
  const value = json[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(field, json[field], 'must be a positive number');
  }
  return value;
}
