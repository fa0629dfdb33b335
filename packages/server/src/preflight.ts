import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';

/**
 * Checks made before anything starts, so that a relay that cannot run says so in one line that
 * says what to do, instead of failing half-way (a database started, a port half bound) with a
 * library's message. Each check throws a StartupError; none prints a password or a secret.
 */

export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** PostgreSQL 15 is the oldest the migrations are written for (docs/configuration.md). */
export const MIN_POSTGRES_VERSION = 15;

const errorCode = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
};

/** DATA_DIR exists (or can be made) and a file can be written in it. */
export const checkDataDir = (dataDir: string): void => {
  const probe = path.join(dataDir, `.write-test-${randomBytes(6).toString('hex')}`);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o711 });
    writeFileSync(probe, '', { flag: 'wx' });
    rmSync(probe);
  } catch (error) {
    throw new StartupError(
      `DATA_DIR ${dataDir} cannot be written (${errorCode(error) ?? 'error'}): give the relay's user write access to it, or set DATA_DIR to a directory it may write`,
    );
  }
};

/** Nothing else listens on HOST:PORT (PORT 0, "any free port", always passes). */
export const checkPortFree = (host: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    if (port === 0) {
      resolve();
      return;
    }
    const server = net.createServer();
    server.once('error', (error) => {
      const code = errorCode(error);
      const hint =
        code === 'EADDRINUSE'
          ? `PORT ${port} on ${host} is already in use (another relay, or another program): stop it, or set PORT to a free port`
          : code === 'EACCES'
            ? `PORT ${port} needs privileges this user lacks: use a port above 1023 and put a proxy in front, or grant CAP_NET_BIND_SERVICE`
            : code === 'EADDRNOTAVAIL'
              ? `HOST ${host} is not an address of this machine: use 127.0.0.1, 0.0.0.0 or one of its addresses`
              : `cannot listen on ${host}:${port} (${code ?? 'error'}): check HOST and PORT`;
      reject(new StartupError(hint));
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });

/** host:port/database of a postgres URL, for messages: never its user or password. */
export const describeDatabase = (url: string): string => {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
};

const CONNECT_TIMEOUT_MS = 5_000;

/** The major version of a `server_version_num` (150004 is 15.4), if it is 15 or newer. */
export const requireSupportedVersion = (versionNum: number, where: string): number => {
  const major = Math.floor(versionNum / 10_000);
  if (!(major >= MIN_POSTGRES_VERSION)) {
    throw new StartupError(
      `the database at ${where} runs PostgreSQL ${Number.isFinite(major) ? major : 'of an unknown version'}, and the relay needs ${MIN_POSTGRES_VERSION} or newer: upgrade PostgreSQL (docs/operations.md, "Upgrades"), or point DATABASE_URL at a newer server`,
    );
  }
  return major;
};

/**
 * The database answers, with these credentials, and runs PostgreSQL 15 or newer. Returns the
 * server's major version.
 */
export const checkDatabase = async (url: string): Promise<number> => {
  const where = describeDatabase(url);
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'privcomm-relay',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<{ server_version_num: string }>('SHOW server_version_num');
    return requireSupportedVersion(Number(result.rows[0]?.server_version_num), where);
  } catch (error) {
    if (error instanceof StartupError) throw error;
    const code = errorCode(error);
    const hints: Record<string, string> = {
      ECONNREFUSED:
        'nothing listens there: start PostgreSQL, or correct the host and port in DATABASE_URL',
      ENOTFOUND: 'the host name is unknown: correct DATABASE_URL',
      EAI_AGAIN: 'the host name could not be resolved: check DNS, or correct DATABASE_URL',
      ETIMEDOUT: 'no answer: check that PostgreSQL runs and a firewall lets the relay through',
      EHOSTUNREACH: 'the host is unreachable: check the network, or correct DATABASE_URL',
      '28P01': 'the password is wrong: correct DATABASE_URL',
      '28000':
        'PostgreSQL refused this user or address (pg_hba.conf): allow it, or correct DATABASE_URL',
      '3D000':
        'the database does not exist: create it (createdb -O <user> <name>), or correct DATABASE_URL',
    };
    const timedOut = /timeout/i.test((error as Error).message ?? '');
    const hint =
      (code !== undefined ? hints[code] : undefined) ??
      (timedOut
        ? `no answer within ${CONNECT_TIMEOUT_MS / 1000} s: check that PostgreSQL runs and a firewall lets the relay through`
        : `${code ?? 'error'}: check DATABASE_URL and that PostgreSQL runs`);
    throw new StartupError(`cannot use the database at ${where}: ${hint}`);
  } finally {
    await client.end().catch(() => undefined);
  }
};
