import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The CLI tests run `privcomm` as users do: bin/privcomm.js, which runs the compiled dist/ when
 * it is up to date. Compiling it here, once per run, means they test that build (what `npm ci`
 * leaves behind) and not the tsx fallback, even right after a source was edited.
 */
export default function setup(): void {
  const script = fileURLToPath(new URL('../../scripts/build.js', import.meta.url));
  const result = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`building the CLI failed (exit ${result.status})`);
}
