/**
 * The benchmark's child scripts (load.ts, make-accounts.ts, ws-ceiling.ts) compiled once per run
 * to plain JavaScript, so that each child is a bare `node` with no TypeScript loader: tsx wraps
 * every closure in a call that keeps its name, which the load generator, on the same two cores as
 * the servers, would pay for every message. (The account maker's hangs, first blamed on tsx, were
 * a deadlock in Node's JWK export: lib/relay-accounts.ts. The client-side scenario still runs
 * under tsx: it imports the workspace's TypeScript packages, which are not compiled here.)
 *
 * Only the project's own files are compiled in; packages stay imports, resolved from the
 * repository's node_modules (the output lies under it, in a folder of this run's own), so ws
 * finds its native bufferutil as it does under tsx.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const SERVER_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** This run's compiled scripts: the orchestrator removes the folder when it ends. */
export const COMPILED_DIR = path.resolve(
  SERVER_ROOT,
  '..',
  '..',
  'node_modules',
  '.cache',
  'privcomm-bench',
  String(process.pid),
);

/** Compiles bench/`script` (e.g. `load.ts`) and returns the path of the .mjs to run. */
export const compileBenchScript = async (script: string): Promise<string> => {
  const outfile = path.join(COMPILED_DIR, script.replace(/\.ts$/, '.mjs'));
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
