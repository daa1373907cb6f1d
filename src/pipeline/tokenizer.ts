import { Tokenizer } from '@huggingface/tokenizers';
import { InputError, ModelFilesError, TextTooLongError } from '../errors.js';
import type { TokenizerFiles } from '../weights/model-folder.js';

/** Nomic's task prefixes; the model was trained with them and expects one. */
export const TASK_PREFIXES = {
  search_query: 'search_query: ',
  search_document: 'search_document: ',
  clustering: 'clustering: ',
  classification: 'classification: ',
} as const;

export type Task = keyof typeof TASK_PREFIXES;

export const TASKS = Object.keys(TASK_PREFIXES) as readonly Task[];

/** What happens to a text longer than the maximum length: cut it (keeping [SEP]), or refuse it. */
export const TRUNCATIONS = ['truncate', 'error'] as const;
export type Truncation = (typeof TRUNCATIONS)[number];

/** A text longer than the maximum length: keep its opening, or embed the mean of its windows. */
export const LONG_TEXT_MODES = ['truncate', 'mean'] as const;
export type LongText = (typeof LONG_TEXT_MODES)[number];

export interface TokenizedText {
  /** Token ids including [CLS] and [SEP], at most the maximum length. */
  readonly ids: Int32Array;
  /**
   * Tokens cut off by truncation (0 when the text fit). A lower bound when
   * {@link exact} is false: only the text's opening was tokenized.
   */
  readonly truncatedTokens: number;
  /** Whether `ids.length + truncatedTokens` is the text's full token count. */
  readonly exact: boolean;
}

/** Hugging Face writes a huge sentinel (1e30) as model_max_length when none is set. */
const UNSET_MAX_LENGTH = 1e9;

/**
 * Characters tokenized first per token of the maximum length. English runs
 * about 4 characters a token; a text that yields too few tokens from this
 * much is tried again with twice as much.
 */
const CHARS_PER_TOKEN_GUESS = 8;

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
   * From the parsed `tokenizer.json` and `tokenizer_config.json` (`{}` when
   * the model has none), read from a folder (`readTokenizerFiles`) or fetched.
   * The maximum length is `maxLength` when given, else `model_max_length` from
   * `tokenizer_config.json`, else the model's `n_positions`: never the 512 of
   * plain BERT configs unless the folder says so.
   */
  static fromFiles(files: TokenizerFiles, modelPositions: number, maxLength?: number): TextTokenizer {
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(files.tokenizer, files.config as Record<string, unknown>);
    } catch (cause) {
      throw new ModelFilesError(files.path, `not a usable tokenizer: ${(cause as Error).message}`);
    }
    const sepId = tokenizer.token_to_id('[SEP]');
    if (sepId === undefined) throw new ModelFilesError(files.path, 'the vocabulary has no [SEP] token');
    const configured = files.config.model_max_length;
    if (configured !== undefined && configured !== null && !(typeof configured === 'number' && configured >= UNSET_MAX_LENGTH)) {
      // [CLS] and [SEP] need two positions; a fraction would make truncation drop the [SEP].
      if (!Number.isSafeInteger(configured) || (configured as number) < 2) {
        throw new ModelFilesError(files.configPath, `model_max_length ${JSON.stringify(configured)} is not an integer of at least 2`);
      }
      return new TextTokenizer(tokenizer, maxLength ?? (configured as number), sepId);
    }
    return new TextTokenizer(tokenizer, maxLength ?? modelPositions, sepId);
  }

  /** Tokenizes one text with its task prefix. `index` names the text in errors. */
  encode(text: string, task: Task | undefined, truncation: Truncation, index: number): TokenizedText {
    const prefixed = task === undefined ? text : TASK_PREFIXES[task] + text;
    const { ids, exact } = this.encodeEnough(prefixed);
    if (ids.length <= this.maxLength) return { ids: Int32Array.from(ids), truncatedTokens: 0, exact: true };
    if (truncation === 'error') throw new TextTooLongError(index, ids.length, this.maxLength, exact);
    const kept = Int32Array.from(ids.slice(0, this.maxLength));
    kept[this.maxLength - 1] = this.sepId;
    return { ids: kept, truncatedTokens: ids.length - this.maxLength, exact };
  }

  /**
   * The windows of a text for `longText: 'mean'`: each at most the maximum
   * length, each [CLS], the task prefix, a stretch of the text's tokens and
   * [SEP]; consecutive windows share `overlap` tokens. A text that fits is one
   * window, the ids `encode` gives it.
   */
  windows(text: string, task: Task | undefined, overlap: number): Int32Array[] {
    const full = this.tokenizer.encode(task === undefined ? text : TASK_PREFIXES[task] + text).ids;
    if (full.length <= this.maxLength) return [Int32Array.from(full)];
    // The prefix ends in a space, where BERT's pre-tokenizer splits: its tokens open every window alike.
    const head = full.slice(0, 1 + (task === undefined ? 0 : this.tokenizer.encode(TASK_PREFIXES[task]).ids.length - 2));
    const body = full.slice(head.length, -1);
    const width = this.maxLength - head.length - 1;
    if (overlap >= width) throw new InputError('overlap', `must be less than the ${width} text tokens a window of ${this.maxLength} holds, got ${overlap}`);
    const windows: Int32Array[] = [];
    for (let start = 0; ; start += width - overlap) {
      windows.push(Int32Array.from([...head, ...body.slice(start, start + width), this.sepId]));
      if (start + width >= body.length) return windows;
    }
  }

  /**
   * Token ids of the text, or of an opening of it long enough to be cut to the
   * maximum length: a megabyte of text is not tokenized whole to keep its
   * first 8192 tokens. The opening ends at whitespace, where the BERT
   * pre-tokenizer splits anyway, so its tokens are those the whole text
   * starts with.
   */
  private encodeEnough(text: string): { ids: number[]; exact: boolean } {
    let budget = this.maxLength * CHARS_PER_TOKEN_GUESS;
    while (budget < text.length) {
      const cut = nextWhitespace(text, budget);
      if (cut < 0) break;
      const ids = this.tokenizer.encode(text.slice(0, cut)).ids;
      // More than the maximum even without the [SEP] the opening ends with: the rest cannot matter.
      if (ids.length > this.maxLength) return { ids, exact: false };
      budget *= 2;
    }
    return { ids: this.tokenizer.encode(text).ids, exact: true };
  }
}

/** Index of the first space, tab or line break at or after `from`, or -1. */
function nextWhitespace(text: string, from: number): number {
  const match = /[ \t\n\r]/g;
  match.lastIndex = from;
  return match.exec(text)?.index ?? -1;
}
