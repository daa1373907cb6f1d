/**
 * Every error this package throws is a {@link NomicEmbedError}; each subclass
 * carries the fields that explain it, and its message says what failed, where,
 * and how to fix it.
 */
export class NomicEmbedError extends Error {
  override name = 'NomicEmbedError';
}

/** A safetensors file is malformed or holds something we cannot read. */
export class SafetensorsError extends NomicEmbedError {
  override name = 'SafetensorsError';
  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor === undefined ? '' : ` (tensor "${tensor}")`}: ${detail}`);
  }
}

/** A `config.json` field holds a value this implementation does not support. */
export class ConfigError extends NomicEmbedError {
  override name = 'ConfigError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`config field "${field}" = ${JSON.stringify(value)}: ${reason}`);
  }
}

/** The tensors of a checkpoint do not match what the config calls for. */
export class WeightsError extends NomicEmbedError {
  override name = 'WeightsError';
  constructor(
    readonly file: string,
    readonly missing: readonly string[],
    readonly unexpected: readonly string[],
    readonly misshaped: readonly { name: string; expected: readonly number[]; actual: readonly number[] }[],
  ) {
    const lines = [
      ...missing.map((n) => `  missing: ${n}`),
      ...unexpected.map((n) => `  unexpected: ${n}`),
      ...misshaped.map((m) => `  wrong shape: ${m.name} is [${m.actual}], expected [${m.expected}]`),
    ];
    super(`${file} does not match the model config:\n${lines.join('\n')}`);
  }
}

/** A weight holds NaN or an infinity. */
export class NonFiniteWeightError extends NomicEmbedError {
  override name = 'NonFiniteWeightError';
  constructor(
    readonly file: string,
    readonly tensor: string,
    readonly index: number,
    readonly value: number,
  ) {
    super(`${file}: tensor "${tensor}" holds ${value} at flat index ${index}; the checkpoint is corrupt`);
  }
}

/** A tensor between two pipeline stages has the wrong shape. */
export class ShapeError extends NomicEmbedError {
  override name = 'ShapeError';
  constructor(
    readonly stage: string,
    readonly expected: readonly (number | string)[],
    readonly actual: readonly number[],
  ) {
    super(`${stage}: expected shape [${expected.join(', ')}], got [${actual.join(', ')}]`);
  }
}

/** A requested backend is not available on this machine. */
export class BackendError extends NomicEmbedError {
  override name = 'BackendError';
  constructor(
    readonly backend: string,
    detail: string,
  ) {
    super(`backend "${backend}": ${detail}`);
  }
}

/** A model folder lacks a file, or a file in it cannot be parsed. */
export class ModelFilesError extends NomicEmbedError {
  override name = 'ModelFilesError';
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

/** An argument of a public call is invalid. */
export class InputError extends NomicEmbedError {
  override name = 'InputError';
  constructor(
    readonly argument: string,
    detail: string,
    readonly index?: number,
  ) {
    super(`${argument}${index === undefined ? '' : `[${index}]`}: ${detail}`);
  }
}

/** A text is longer than the maximum length and truncation was refused. */
export class TextTooLongError extends NomicEmbedError {
  override name = 'TextTooLongError';
  constructor(
    readonly index: number,
    /** The text's token count, or a lower bound of it when `exact` is false. */
    readonly tokens: number,
    readonly maxLength: number,
    readonly exact = true,
  ) {
    super(
      `texts[${index}] has ${exact ? '' : 'at least '}${tokens} tokens, more than the maximum of ${maxLength}; ` +
        `pass truncation: 'truncate' to cut it, or raise maxLength`,
    );
  }
}

/** A single text still ran out of memory after the batch was reduced to it alone. */
export class OutOfMemoryError extends NomicEmbedError {
  override name = 'OutOfMemoryError';
  constructor(
    readonly index: number,
    readonly tokens: number,
    cause: unknown,
  ) {
    super(
      `texts[${index}] (${tokens} tokens) does not fit in memory even alone: ${String(cause)}; ` +
        `lower maxLength or use a backend with more memory`,
      { cause },
    );
  }
}

/** The embedding queue holds more tokens than the caller allows (`maxQueueTokens`): try again later (HTTP 429). */
export class QueueFullError extends NomicEmbedError {
  override name = 'QueueFullError';
  constructor(
    readonly queuedTokens: number,
    readonly maxQueueTokens: number,
  ) {
    super(`the queue holds ${queuedTokens} of at most ${maxQueueTokens} tokens; try again shortly`);
  }
}

/** One call alone holds more tokens than its `maxQueueTokens` allows queued at once (HTTP 413). */
export class RequestTooLargeError extends NomicEmbedError {
  override name = 'RequestTooLargeError';
  constructor(
    readonly tokens: number,
    readonly maxQueueTokens: number,
  ) {
    super(`the request holds ${tokens} tokens, more than the queue takes at once (${maxQueueTokens}); split it`);
  }
}

/** The call was withdrawn (its `signal` aborted) before all its texts ran. */
export class CancelledError extends NomicEmbedError {
  override name = 'CancelledError';
  constructor() {
    super('the request was cancelled');
  }
}

/** A download failed or its bytes are not the ones the hub announced. */
export class DownloadError extends NomicEmbedError {
  override name = 'DownloadError';
  constructor(
    readonly url: string,
    detail: string,
    /** The HTTP status that refused the file, when a server answered (404: not there). */
    readonly status?: number,
  ) {
    super(`${url}: ${detail}`);
  }
}

/** The embedder was disposed before or while the call ran. */
export class DisposedError extends NomicEmbedError {
  override name = 'DisposedError';
  constructor(subject = 'the embedder', remedy = 'load a new one with loadEmbedder') {
    super(`${subject} was disposed; ${remedy}`);
  }
}

/**
 * A worker thread died, failed to start, or threw an error that is not one of
 * this package's (those arrive as themselves, with their fields).
 */
export class WorkerError extends NomicEmbedError {
  override name = 'WorkerError';
  constructor(
    message: string,
    /** `exited`: the thread ended mid-batch; `no-workers`: none is left running; `thrown`: an error raised inside it. */
    readonly reason: 'exited' | 'no-workers' | 'thrown',
    /** The name of the error raised inside the thread, for `thrown`. */
    readonly originalName?: string,
  ) {
    super(message);
  }
}
