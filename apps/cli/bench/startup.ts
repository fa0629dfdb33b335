/**
 * How long a `privcomm` command takes from start to exit: `--help` through npx (as README runs
 * it) and through the binary directly, then `whoami` and `contacts list` on a registered profile
 * (no network, but the profile, SQLite and libsignal are opened). Prints medians; asserts
 * nothing (speed is measured, never a test). It starts a relay as `npm start` does, on an
 * embedded PostgreSQL in a temporary directory, to register that profile.
 *
 *   npm run bench:cli [-- --runs N]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isBuildFresh } from '../scripts/build-state.js';

const CLI_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const REPO = path.resolve(CLI_ROOT, '../..');
const BIN = path.join(CLI_ROOT, 'bin', 'privcomm.js');

const write = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
  process.stderr.write('bench:cli: --runs must be an integer from 1 to 50\n');
  process.exit(2);
}

const median = (list: number[]): number => [...list].sort((a, b) => a - b)[list.length >> 1]!;

/** Runs a command to completion `runs` times; the median wall time in ms. */
const time = (command: string, args: string[], env: NodeJS.ProcessEnv = {}): number => {
  const times: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const started = performance.now();
    const result = spawnSync(command, args, {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    times.push(performance.now() - started);
    if (result.status !== 0)
      throw new Error(`${[command, ...args].join(' ')} exited ${result.status}: ${result.stderr}`);
  }
  return median(times);
};

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });

const report = (what: string, ms: number): void =>
  write(`${what.padEnd(44)} median of ${runs}: ${(ms / 1000).toFixed(3)} s`);

write(
  isBuildFresh()
    ? 'running the compiled CLI (apps/cli/dist)'
    : 'dist/ is older than the sources: running them through tsx (npm run build:cli compiles them)',
);
report('npx --no-install privcomm --help', time('npx', ['--no-install', 'privcomm', '--help']));
report('node apps/cli/bin/privcomm.js --help', time(process.execPath, [BIN, '--help']));
report('node -e 0 (Node itself, for scale)', time(process.execPath, ['-e', '0']));

const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-relay-'));
const profile = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-profile-'));
const port = await freePort();
const relay = spawn(process.execPath, ['--import', 'tsx', 'packages/server/src/main.ts'], {
  cwd: REPO,
  env: {
    PATH: process.env.PATH ?? '',
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const exited = new Promise<void>((resolve) => relay.once('exit', () => resolve()));
try {
  const server = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (relay.exitCode !== null) throw new Error(`the relay exited with ${relay.exitCode}`);
    const up = await fetch(`${server}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error('the relay did not start within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const registered = spawnSync(
    process.execPath,
    [BIN, '--profile', profile, '--server', server, 'register'],
    { encoding: 'utf8' },
  );
  if (registered.status !== 0) throw new Error(`register failed: ${registered.stderr}`);
  report('privcomm whoami', time(process.execPath, [BIN, '--profile', profile, 'whoami']));
  report(
    'privcomm contacts list',
    time(process.execPath, [BIN, '--profile', profile, 'contacts', 'list']),
  );
} finally {
  relay.kill('SIGINT');
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
