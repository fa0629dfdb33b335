import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireSupportedVersion, StartupError } from '../src/preflight.ts';
import { createTestDatabase } from './support/database.ts';
import { runServerScript, type CommandResult } from './support/relay.ts';

/**
 * What stops a relay before anything starts: each mistake an operator makes gives one line on
 * stderr that names it and says what to do, and no stack trace; nothing is started or written.
 */

let database: { url: string; drop: () => Promise<void> };
const dirs: string[] = [];
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const tempDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-startup-'));
  dirs.push(dir);
  return dir;
};

/** Whether the server refuses a wrong password (28P01) rather than trusting every client. */
const checksPasswords = async (url: URL): Promise<boolean> => {
  const client = new pg.Client({ connectionString: url.toString() });
  try {
    await client.connect();
    await client.end();
    return false;
  } catch (error) {
    return (error as { code?: string }).code === '28P01';
  }
};

const start = (env: Record<string, string>): Promise<CommandResult> =>
  runServerScript('main.ts', [], { PORT: '0', LOG_LEVEL: 'warn', ...env });

/** The single stderr line, checked to be the only output. */
const oneLine = (result: CommandResult): string => {
  const lines = result.stderr.split('\n').filter(Boolean);
  expect(lines, result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stdout).toBe('');
  return lines[0] as string;
};

describe('the relay refuses to start, in one line that says what to do', () => {
  it('without JWT_SECRET on an external database', async () => {
    const result = await start({ DATABASE_URL: database.url, JWT_SECRET: '' });
    expect(result.code).toBe(2);
    expect(oneLine(result)).toBe(
      'privcomm relay: invalid configuration: JWT_SECRET: required with DATABASE_URL; generate one with `openssl rand -base64 32` and give every instance the same value',
    );
  });

  it('with a JWT_SECRET that is not random', async () => {
    const result = await start({ DATABASE_URL: database.url, JWT_SECRET: `${'A'.repeat(43)}=` });
    expect(result.code).toBe(2);
    expect(oneLine(result)).toBe(
      'privcomm relay: invalid configuration: JWT_SECRET: is not random (a placeholder or a repeated pattern); generate one with `openssl rand -base64 32`',
    );
  });

  it('when the database cannot be reached', async () => {
    const result = await start({ DATABASE_URL: 'postgres://relay:hunter2@127.0.0.1:2/privcomm' });
    expect(result.code).toBe(1);
    const line = oneLine(result);
    expect(line).toBe(
      'privcomm relay: cannot start: cannot use the database at 127.0.0.1:2/privcomm: nothing listens there: start PostgreSQL, or correct the host and port in DATABASE_URL',
    );
    expect(line).not.toContain('hunter2');
  });

  it('when the database password is wrong', async () => {
    const wrongPassword = new URL(database.url);
    wrongPassword.password = 'not-the-password';
    if (!(await checksPasswords(wrongPassword))) {
      // A server whose pg_hba.conf says `trust` (the system PostgreSQL of CI) accepts any password,
      // so no relay can be refused for one there; the embedded PostgreSQL asks for it, and CI's
      // first pass runs this test on it.
      process.stdout.write(
        '[startup-errors] this PostgreSQL trusts every password: checked on the embedded one\n',
      );
      expect(await checksPasswords(wrongPassword)).toBe(false);
      return;
    }
    const refused = await start({ DATABASE_URL: wrongPassword.toString() });
    expect(refused.code).toBe(1);
    expect(oneLine(refused)).toMatch(/: the password is wrong: correct DATABASE_URL$/);
    expect(refused.stderr).not.toContain('not-the-password');
  });

  it('when the database is missing', async () => {
    const missing = new URL(database.url);
    missing.pathname = '/privcomm_no_such_database';
    const absent = await start({ DATABASE_URL: missing.toString() });
    expect(absent.code).toBe(1);
    expect(oneLine(absent)).toMatch(
      /\/privcomm_no_such_database: the database does not exist: create it \(createdb -O <user> <name>\), or correct DATABASE_URL$/,
    );
  });

  it('when the port is in use, before starting the embedded PostgreSQL', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as net.AddressInfo).port;
    const dataDir = path.join(tempDir(), 'data');
    try {
      const result = await start({ DATA_DIR: dataDir, PORT: String(port), JWT_SECRET: '' });
      expect(result.code).toBe(1);
      expect(oneLine(result)).toBe(
        `privcomm relay: cannot start: PORT ${port} on 127.0.0.1 is already in use (another relay, or another program): stop it, or set PORT to a free port`,
      );
      expect(existsSync(path.join(dataDir, 'postgres'))).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('when DATA_DIR cannot be written', async () => {
    // Under a regular file: no directory can be made there, whoever runs the test (root too).
    const file = path.join(tempDir(), 'a-file');
    writeFileSync(file, '');
    const dataDir = path.join(file, 'data');
    const result = await start({ DATA_DIR: dataDir, SECRETS_DIR: tempDir() });
    expect(result.code).toBe(1);
    expect(oneLine(result)).toBe(
      `privcomm relay: cannot start: DATA_DIR ${dataDir} cannot be written (ENOTDIR): give the relay's user write access to it, or set DATA_DIR to a directory it may write`,
    );
    // The secrets the relay generates beside it: the same, naming SECRETS_DIR.
    const secrets = await start({ DATA_DIR: tempDir(), SECRETS_DIR: dataDir, JWT_SECRET: '' });
    expect(secrets.code).toBe(2);
    expect(oneLine(secrets)).toBe(
      `privcomm relay: invalid configuration: SECRETS_DIR: ${dataDir} cannot be written (ENOTDIR): give the relay's user write access to it, or set SECRETS_DIR (or the secret itself) to something it may write`,
    );
  });
});

describe('requireSupportedVersion', () => {
  it('accepts PostgreSQL 15 and newer and refuses older ones, saying what to do', () => {
    expect(requireSupportedVersion(150004, 'db:5432/privcomm')).toBe(15);
    expect(requireSupportedVersion(180001, 'db:5432/privcomm')).toBe(18);
    for (const old of [140010, 90624]) {
      expect(() => requireSupportedVersion(old, 'db:5432/privcomm')).toThrow(StartupError);
    }
    expect(() => requireSupportedVersion(140010, 'db:5432/privcomm')).toThrow(
      'the database at db:5432/privcomm runs PostgreSQL 14, and the relay needs 15 or newer: upgrade PostgreSQL (docs/operations.md, "Upgrades"), or point DATABASE_URL at a newer server',
    );
    expect(() => requireSupportedVersion(Number.NaN, 'db')).toThrow(/of an unknown version/);
  });
});
