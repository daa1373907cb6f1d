/**
 * npm run convert -- SOURCE_DIR OUT_DIR [--dtype float32|float16]
 *
 * Converts a Hugging Face nomic_bert checkpoint folder into this package's
 * runtime layout (see README, "Converted weights").
 */
import { runCli } from '../src/cli/main.js';

process.exitCode = await runCli(['convert', ...process.argv.slice(2)]);
