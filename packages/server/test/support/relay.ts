import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { buildApp, type Relay } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { loggerOptions } from '../../src/logger.ts';

export const JWT_SECRET = randomBytes(32).toString('base64');
/** Phone-number discovery on, with a key of this test run. */
export const DISCOVERY_KEY = `1:${randomBytes(32).toString('base64')}`;

/** Generous limits so that tests exercising other things never trip them. */
const BASE_ENV: Record<string, string> = {
  JWT_SECRET,
  DISCOVERY_KEY,
  LOG_LEVEL: 'trace',
  RATE_LIMIT_REGISTRATION: '1000/1',
  RATE_LIMIT_AUTH: '1000/1',
  RATE_LIMIT_LOGIN: '1000/1',
  RATE_LIMIT_PREKEY_FETCH: '1000/1',
  RATE_LIMIT_MESSAGES: '1000/1',
};

export interface TestRelay {
  readonly relay: Relay;
  readonly url: string;
  readonly wsUrl: string;
  /** Every log line the relay wrote, as written. */
  readonly logs: string[];
  close(): Promise<void>;
}

/**
 * A relay instance in this process, on a real loopback port (a free one, or PORT from `env`, so
 * that a test can restart a relay where its clients expect it), logging at trace level.
 */
export const startRelay = async (
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<TestRelay> => {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const config = loadConfig({ ...BASE_ENV, DATABASE_URL: databaseUrl, ...env });
  const relay = await buildApp(config, {
    databaseUrl,
    logger: pino(loggerOptions(config.logLevel), sink),
  });
  await relay.app.listen({
    host: '127.0.0.1',
    port: env.PORT === undefined ? 0 : config.port,
    listenTextResolver: () => 'bound',
  });
  const address = relay.app.server.address();
  if (typeof address !== 'object' || !address) throw new Error('relay has no address');
  return {
    relay,
    url: `http://127.0.0.1:${address.port}`,
    wsUrl: `ws://127.0.0.1:${address.port}/v1/websocket`,
    logs,
    close: () => relay.close(),
  };
};

const SERVER_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RelayProcess {
  readonly url: string;
  readonly wsUrl: string;
  readonly logs: string[];
  readonly child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * A relay as a separate OS process (`src/main.ts` under tsx), as an operator would run it. No
 * development coturn (DEV_TURN=off) unless `env` asks for one: tests that want TURN start their own.
 */
export const spawnRelay = async (
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<RelayProcess> => {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('src', 'main.ts')], {
    cwd: SERVER_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      ...BASE_ENV,
      DATABASE_URL: databaseUrl,
      PORT: '0',
      DEV_TURN: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const port = await new Promise<number>((resolve, reject) => {
    // Generous: on a machine shared by many test processes, tsx alone can take half a minute.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay did not start:\n${logs.join('\n')}`));
    }, 60_000);
    const onLine = (line: string): void => {
      logs.push(line);
      const match = /"port":(\d+).*"msg":"relay listening"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    let buffered = '';
    const feed = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      lines.filter(Boolean).forEach(onLine);
    };
    child.stdout?.on('data', feed);
    child.stderr?.on('data', feed);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code}:\n${logs.join('\n')}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/v1/websocket`,
    logs,
    child,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
};

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One of the relay's entry points (`src/main.ts`, `src/cli/*.ts`) as a process, the way an operator
 * runs it, with only PATH, the test JWT_SECRET and the given environment; returns what it printed.
 */
export const runServerScript = (
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<CommandResult> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join('src', script), ...args], {
      cwd: SERVER_ROOT,
      env: { PATH: process.env.PATH ?? '', JWT_SECRET, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });

/**
 * A free loopback port below Linux's ephemeral range (32768 and up), for a relay that restarts on
 * the same port: no other process's bind to port 0 can take it in the gap. (The coturn tests use
 * 20000 and up.)
 */
export const portToRestartOn = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const candidate = randomInt(10_000, 20_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(candidate, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return candidate;
  }
  throw new Error('no free port from 10000 to 19999');
};
