import { Tokenizer } from '@huggingface/tokenizers';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFilesError, TextTooLongError } from '../errors.js';
import { readJson } from '../model/load-model.js';

/** Nomic's task prefixes; the model was trained with them and expects one. */
export const TASK_PREFIXES = {
  search_query: 'search_query: ',
  search_document: 'search_document: ',
  clustering: 'clustering: ',
  classification: 'classification: ',
} as const;

export type Task = keyof typeof TASK_PREFIXES;

/** What happens to a text longer than the maximum length. */
export type Truncation = 'truncate' | 'error';

export interface TokenizedText {
  /** Token ids including [CLS] and [SEP], at most the maximum length. */
  readonly ids: Int32Array;
  /** Tokens cut off by truncation (0 when the text fit). */
  readonly truncatedTokens: number;
}

/** Hugging Face writes a huge sentinel (1e30) as model_max_length when none is set. */
const UNSET_MAX_LENGTH = 1e9;

/**
 * The model folder's `tokenizer.json` (bert-base-uncased WordPiece for
 * nomic-embed-text-v1.5) run by `@huggingface/tokenizers`, with task prefixes
 * and truncation that keeps the final [SEP].
 */
export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    /** The longest sequence, [CLS] and [SEP] included, passed to the model. */
    readonly maxLength: number,
    private readonly sepId: number,
  ) {}

  /**
   * Loads `tokenizer.json` (required) and `tokenizer_config.json` (optional).
   * The maximum length is `maxLength` when given, else `model_max_length` from
   * `tokenizer_config.json`, else the model's `n_positions`: never the 512 of
   * plain BERT configs unless the folder says so.
   */
  static fromDir(dir: string, modelPositions: number, maxLength?: number): TextTokenizer {
    const tokenizerPath = join(dir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) {
      throw new ModelFilesError(tokenizerPath, 'tokenizer.json not found; the model folder needs its tokenizer files');
    }
    const configPath = join(dir, 'tokenizer_config.json');
    const tokenizerConfig = (existsSync(configPath) ? readJson(configPath) : {}) as Record<string, unknown>;
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(readJson(tokenizerPath) as object, tokenizerConfig);
    } catch (cause) {
      throw new ModelFilesError(tokenizerPath, `not a usable tokenizer: ${(cause as Error).message}`);
    }
    const sepId = tokenizer.token_to_id('[SEP]');
    if (sepId === undefined) throw new ModelFilesError(tokenizerPath, 'the vocabulary has no [SEP] token');
    const configured = tokenizerConfig.model_max_length;
    const fromFolder =
      typeof configured === 'number' && configured > 0 && configured < UNSET_MAX_LENGTH ? configured : modelPositions;
    return new TextTokenizer(tokenizer, maxLength ?? fromFolder, sepId);
  }

  /** Tokenizes one text with its task prefix. `index` names the text in errors. */
  encode(text: string, task: Task | undefined, truncation: Truncation, index: number): TokenizedText {
    const prefixed = task === undefined ? text : TASK_PREFIXES[task] + text;
    const ids = this.tokenizer.encode(prefixed).ids;
    if (ids.length <= this.maxLength) return { ids: Int32Array.from(ids), truncatedTokens: 0 };
    if (truncation === 'error') throw new TextTooLongError(index, ids.length, this.maxLength);
    const kept = Int32Array.from(ids.slice(0, this.maxLength));
    kept[this.maxLength - 1] = this.sepId;
    return { ids: kept, truncatedTokens: ids.length - this.maxLength };
  }
}
