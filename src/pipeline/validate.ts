import { ShapeError } from '../errors.js';

/**
 * The dimension validator between pipeline stages: a shape that drifts is
 * caught where it happens, named by stage, rather than as a wrong vector later.
 */
export function checkShape(stage: string, actual: readonly number[], expected: readonly number[]): void {
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    throw new ShapeError(stage, expected, actual);
  }
}
