import { InputError } from './errors.js';

/** Checks an options object for names it does not know, so a typo is an error rather than a silent default. */
export function checkOptionNames(what: string, options: object, known: readonly string[]): void {
  if (options === null || typeof options !== 'object') throw new InputError(what, `must be an object, got ${describe(options)}`);
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new InputError(what, `unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; known: ${known.join(', ')}`);
  }
}

/** An integer of at least `min`. */
export function checkInteger(name: string, value: unknown, min: number): void {
  if (!Number.isSafeInteger(value) || (value as number) < min) {
    throw new InputError(name, `must be an integer of at least ${min}, got ${describe(value)}`);
  }
}

/**
 * One of `choices`. The message names them all: `unknown task "x"; use one of
 * search_query, …` with a `lead`, else `must be 'a' or 'b', got …`.
 */
export function checkChoice<T extends string>(name: string, value: unknown, choices: readonly T[], lead?: string): asserts value is T {
  if ((choices as readonly unknown[]).includes(value)) return;
  const detail =
    lead === undefined
      ? `must be ${choices.map((c) => `'${c}'`).join(choices.length === 2 ? ' or ' : ', ')}, got ${describe(value)}`
      : `${lead} ${describe(value)}; use one of ${choices.join(', ')}`;
  throw new InputError(name, detail);
}

/** A value as it reads in an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}
