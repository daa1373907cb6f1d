import { copyFileSync, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/weights/config.js';
import { convertWeights } from '../../src/weights/convert.js';
import { writeSafetensorsStream } from '../../src/weights/safetensors-file.js';
import { weightTable } from '../../src/weights/weight-table.js';

/** nomic-embed-text-v1.5's architecture, as its config.json gives it. */
export const REAL_CONFIG = {
  model_type: 'nomic_bert',
  activation_function: 'swiglu',
  n_embd: 768,
  n_head: 12,
  n_layer: 12,
  n_inner: 3072,
  n_positions: 8192,
  vocab_size: 30528,
  pad_vocab_size_multiple: 64,
  type_vocab_size: 2,
  layer_norm_epsilon: 1e-12,
  rotary_emb_base: 1000,
  rotary_emb_fraction: 1.0,
  rotary_emb_interleaved: false,
  rotary_scaling_factor: null,
  max_trained_positions: 2048,
  prenorm: false,
  qkv_proj_bias: false,
  mlp_fc1_bias: false,
  mlp_fc2_bias: false,
};

/**
 * Writes a full-size checkpoint with random weights in the Hugging Face layout:
 * the speed of a forward pass does not depend on the values, so benchmarks
 * need no download. Reused when already present.
 */
export function ensureRandomCheckpoint(dir: string, tokenizer: string): string {
  if (existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'tokenizer.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const config = parseConfig(REAL_CONFIG);
  const specs = [...weightTable(config, 'hf')].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const }));
  let state = 0x9e3779b9;
  // xorshift32 with a cheap approximately normal draw (sum of uniforms): fast, deterministic.
  const uniform = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  function* data() {
    for (const spec of specs) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      const isNorm = /(norm\d|emb_ln)\.weight$/.test(spec.name);
      const isBias = spec.name.endsWith('.bias');
      for (let i = 0; i < n; i++) {
        values[i] = isNorm ? 1 : isBias ? 0 : 0.02 * (uniform() + uniform() + uniform() - 1.5) * 2;
      }
      yield values;
    }
  }
  writeSafetensorsStream(join(dir, 'model.safetensors.partial'), specs, data(), { format: 'pt' });
  renameSync(join(dir, 'model.safetensors.partial'), join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(REAL_CONFIG, null, 2));
  copyFileSync(tokenizer, join(dir, 'tokenizer.json'));
  return dir;
}

/**
 * The q8 checkpoint of `source` (see `convert --dtype q8`), written once and
 * again whenever the source is newer: what q8 runs load, so that start-up
 * measures loading codes as they are rather than quantizing.
 */
export function ensureQ8Checkpoint(source: string, dir: string): string {
  const target = join(dir, 'model.safetensors');
  if (existsSync(target) && statSync(target).mtimeMs > statSync(join(source, 'model.safetensors')).mtimeMs) return dir;
  console.error(`writing the q8 checkpoint ${dir}...`);
  convertWeights(source, dir, { dtype: 'q8' });
  return dir;
}
