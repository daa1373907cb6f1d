import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.js';
import { parseConfig } from '../src/weights/config.js';
import { parameterCount, weightTable } from '../src/weights/weight-table.js';
import { FIXTURES, fixtureDir } from './helpers/fixtures.js';

const tinyJson = JSON.parse(readFileSync(`${fixtureDir('nomic-tiny')}/config.json`, 'utf8'));
/** The real model's dimensions, as make-random-checkpoint writes them. */
const realJson = {
  ...tinyJson,
  n_embd: 768,
  n_head: 12,
  n_layer: 12,
  n_inner: 3072,
};

function configError(json: unknown): ConfigError {
  try {
    parseConfig(json);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('parsed without error');
}

describe('config.json parsing', () => {
  it('keeps the Hugging Face names and derives head size, vocab rows and SwiGLU width', () => {
    const config = parseConfig(tinyJson);
    expect(config).toMatchObject({ n_embd: 64, n_head: 4, n_layer: 2, headDim: 16, ffnWidth: 256, paddedVocabSize: 30528 });
    expect(config.rotary_scaling_factor).toBeNull();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('rounds the SwiGLU width up to a multiple of 256 as upstream does', () => {
    expect(parseConfig({ ...tinyJson, n_inner: 300 }).ffnWidth).toBe(512);
  });

  it('pads the vocabulary to pad_vocab_size_multiple', () => {
    expect(parseConfig({ ...tinyJson, vocab_size: 30522 }).paddedVocabSize).toBe(30528);
  });

  it('accepts a rotary_scaling_factor override', () => {
    expect(parseConfig(tinyJson, { rotary_scaling_factor: 2 }).rotary_scaling_factor).toBe(2);
    expect(configError({ ...tinyJson, rotary_scaling_factor: 0.5 }).field).toBe('rotary_scaling_factor');
  });

  it.each([
    ['prenorm', true],
    ['parallel_block', true],
    ['causal', true],
    ['use_rms_norm', true],
    ['rotary_emb_fraction', 0.5],
    ['rotary_emb_interleaved', true],
    ['qkv_proj_bias', true],
    ['activation_function', 'gelu'],
    ['model_type', 'bert'],
  ])('rejects %s = %j by name', (field, value) => {
    const error = configError({ ...tinyJson, [field]: value });
    expect(error.field).toBe(field);
    expect(error.value).toEqual(value);
    expect(error.message).toContain(field);
  });

  it('rejects missing or nonsensical sizes', () => {
    const { n_layer: _, ...withoutLayers } = tinyJson;
    expect(configError(withoutLayers).field).toBe('n_layer');
    expect(configError({ ...tinyJson, n_head: 5 }).field).toBe('n_head');
    expect(configError([]).field).toBe('(root)');
  });

  it('gives the real model its 112 tensors and 136.7M parameters', () => {
    const table = weightTable(parseConfig(realJson), 'hf');
    const expected = JSON.parse(readFileSync(`${FIXTURES}nomic-embed-text-v1.5/tensors.json`, 'utf8'));
    expect(Object.fromEntries(table)).toEqual(expected.tensors);
    expect(parameterCount(table)).toBe(expected.num_parameters);
    expect(parameterCount(weightTable(parseConfig(realJson), 'runtime'))).toBe(expected.num_parameters);
  });
});
