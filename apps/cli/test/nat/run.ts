import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab, newRunId, removeLab, removeStaleNamespaces, type Lab } from './network.ts';
import { formatTable, type ScenarioResult } from './results.ts';

/**
 * `npm run test:nat`: builds the lab (network.ts), makes a TLS certificate for coturn, runs the
 * NAT scenarios (calls.nat.test.ts) with vitest inside the public namespace, prints the table of
 * what happened, and removes the lab whatever happened. Needs root (network namespaces), ip,
 * nft, openssl and coturn.
 */

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const REQUIRED = ['ip', 'nft', 'openssl', 'turnserver'];

const fail = (message: string): never => {
  process.stderr.write(`test:nat: ${message}\n`);
  process.exit(1);
};

if (process.getuid?.() !== 0)
  fail('needs root: it creates network namespaces (run it as root, as CI does)');
const missing = REQUIRED.filter(
  (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status !== 0,
);
if (missing.length > 0)
  fail(`missing ${missing.join(', ')}: apt-get install iproute2 nftables openssl coturn`);

/** A self-signed certificate for coturn's TLS listener, valid for the TURN address only. */
const makeCertificate = (dir: string, lab: Lab): { cert: string; key: string } => {
  const cert = path.join(dir, 'turn.crt');
  const key = path.join(dir, 'turn.key');
  const result = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=turn.nat.test',
      '-addext',
      `subjectAltName=IP:${lab.turnAddress},DNS:turn.nat.test`,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
  return { cert, key };
};

const stale = removeStaleNamespaces();
if (stale.length > 0) process.stdout.write(`removed ${stale.length} stale namespaces\n`);

/** Builds the lab, runs the scenarios in it, prints the table; returns vitest's exit code. */
const main = async (runId: string, dir: string): Promise<number> => {
  const resultsFile = path.join(dir, 'results.json');
  const lab = createLab(runId);
  const { cert, key } = makeCertificate(dir, lab);
  const vitest = spawn(
    'ip',
    [
      'netns',
      'exec',
      lab.publicNamespace,
      process.execPath,
      path.join(ROOT, 'node_modules/vitest/vitest.mjs'),
      'run',
      '--config',
      path.join(ROOT, 'apps/cli/test/nat/vitest.config.ts'),
      ...process.argv.slice(2),
    ],
    {
      cwd: ROOT,
      stdio: 'inherit',
      env: {
        ...process.env,
        // The database must be the embedded one, inside the namespace: no other is reachable.
        PRIVCOMM_TEST_DATABASE_URL: '',
        PRIVCOMM_NAT_LAB: JSON.stringify(lab),
        PRIVCOMM_NAT_TLS: JSON.stringify({ cert, key }),
        PRIVCOMM_NAT_RESULTS: resultsFile,
      },
    },
  );
  const code = await new Promise<number>((resolve) =>
    vitest.once('exit', (exit, signal) => resolve(exit ?? (signal ? 1 : 0))),
  );
  const results: ScenarioResult[] = existsSync(resultsFile)
    ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as ScenarioResult[])
    : [];
  process.stdout.write(`\n${formatTable(results)}\n`);
  return code;
};

const runId = newRunId(process.pid, randomBytes(2).toString('hex'));
const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-nat-'));
const cleanUp = (): void => {
  removeLab(runId);
  rmSync(dir, { recursive: true, force: true });
};
// Ctrl-C or a kill: vitest (in the same process group) gets the signal too; the lab goes.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    cleanUp();
    process.exit(130);
  });
process.exit(await main(runId, dir).finally(cleanUp));
