/**
 * The benchmark's child scripts (the load generator, make-accounts) compiled once per run to
 * plain JavaScript, so that each child is a bare `node` with no TypeScript loader. Under tsx's
 * loader the account maker hung now and then before its first line (its main thread waiting on a
 * futex for tsx's compiler service; three times in a row on 2026-12-06, which failed the run),
 * and tsx wraps every closure in a call that keeps its name, which the load generator, on the
 * same two cores as the servers, would pay for every message.
 *
 * Only the project's own files are compiled in; packages stay imports, resolved from the
 * repository's node_modules (the output lies under it), so ws finds its native bufferutil as it
 * does under tsx.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const SERVER_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT_DIR = path.resolve(SERVER_ROOT, '..', '..', 'node_modules', '.cache', 'privcomm-bench');

/** Compiles bench/`script` (e.g. `load.ts`) and returns the path of the .mjs to run. */
export const compileBenchScript = async (script: string): Promise<string> => {
  const outfile = path.join(OUT_DIR, script.replace(/\.ts$/, '.mjs'));
  await build({
    entryPoints: [path.join(SERVER_ROOT, 'bench', script)],
    outfile,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
  return outfile;
};
