import { InputError } from '../errors.js';

/**
 * Texts in files, as every command reads them: one text per line, or JSON
 * Lines with a string field "text" when the file ends in .jsonl or .ndjson.
 */
export function isJsonLines(path: string): boolean {
  return /\.(jsonl|ndjson)$/i.test(path);
}

/** The text of one line; `lineNumber` (from 1) and `file` name it in errors. */
export function textOfLine(line: string, lineNumber: number, file: string, jsonl = isJsonLines(file)): string {
  if (!jsonl) return line;
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    throw new InputError(`${file}:${lineNumber}`, 'not valid JSON');
  }
  const text = (record as { text?: unknown } | null)?.text;
  if (typeof text !== 'string') throw new InputError(`${file}:${lineNumber}`, 'needs a string field "text"');
  return text;
}
