/**
 * How long `npm start` takes to serve the relay and its documentation on the embedded PostgreSQL:
 * a cold start (empty DATA_DIR: initdb, secrets, migrations) and a warm one (the same DATA_DIR
 * again), each until /health, /docs/ and /openapi.json answer 200. Prints the times and
 * their ratio to the 15 s target; it asserts nothing (speed is measured, never a test).
 *
 *   npm run bench:startup [-- --runs N]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const TARGET_MS = 15_000;
const GIVE_UP_MS = 120_000;
const ROUTES = ['/health', '/docs/', '/openapi.json'];
const SERVER_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

const write = (line: string): void => {
  process.stdout.write(`${line}\n`);
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

const allServed = async (base: string): Promise<boolean> => {
  try {
    const statuses = await Promise.all(
      ROUTES.map(async (route) => (await fetch(`${base}${route}`)).status),
    );
    return statuses.every((status) => status === 200);
  } catch {
    return false;
  }
};

/** Starts the relay as `npm start` does, and returns the milliseconds until every route is served. */
const timeStart = async (dataDir: string): Promise<number> => {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('src', 'main.ts')], {
    cwd: SERVER_ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    while (performance.now() - started < GIVE_UP_MS) {
      if (child.exitCode !== null) throw new Error(`the relay exited with ${child.exitCode}`);
      if (await allServed(`http://127.0.0.1:${port}`)) return performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`the relay did not serve ${ROUTES.join(', ')} within ${GIVE_UP_MS / 1000} s`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
};

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
  process.stderr.write('bench:startup: --runs must be an integer from 1 to 20\n');
  process.exit(2);
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const ratio = (ms: number): string => `${(ms / TARGET_MS).toFixed(2)} of the 15 s target`;
const median = (list: number[]): number => [...list].sort((a, b) => a - b)[list.length >> 1]!;

const cold: number[] = [];
const warm: number[] = [];
for (let run = 1; run <= runs; run += 1) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-'));
  try {
    cold.push(await timeStart(dataDir));
    warm.push(await timeStart(dataDir));
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  write(`run ${run}: cold ${seconds(cold.at(-1)!)}, warm ${seconds(warm.at(-1)!)}`);
}
write(
  `cold start (empty DATA_DIR), median of ${runs}: ${seconds(median(cold))}, ${ratio(median(cold))}`,
);
write(
  `warm start (existing DATA_DIR), median of ${runs}: ${seconds(median(warm))}, ${ratio(median(warm))}`,
);
