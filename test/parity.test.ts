import { afterAll, beforeAll, describe, it } from 'vitest';
import { loadModel } from '../src/model/load-model.js';
import type { NomicBertModel } from '../src/model/nomic-bert.js';
import { PORTABLE_BACKENDS, useBackend } from './helpers/backend.js';
import { FIXTURE_NAMES, fixtureDir, reference } from './helpers/fixtures.js';
import { expectParity } from './helpers/parity.js';

describe.each(PORTABLE_BACKENDS)('parity with the upstream model on the %s backend', (backend) => {
  describe.each(FIXTURE_NAMES)('%s', (fixture) => {
    let model: NomicBertModel;
    const ref = reference(fixture);

    beforeAll(async () => {
      await useBackend(backend);
      model = loadModel(fixtureDir(fixture));
    });
    afterAll(() => model.dispose());

    it.each(ref.texts.map((t) => [t.name, t] as const))('%s', (_, text) => expectParity(model, ref, text));
  });
});
