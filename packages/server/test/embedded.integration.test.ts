import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';

const log = pino({ level: 'silent' });
const SERVER_ROOT = fileURLToPath(new URL('..', import.meta.url));
const asRoot = process.getuid?.() === 0;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const newDataDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-embedded-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const start = async (dataDir: string): Promise<EmbeddedDatabase> => {
  const database = await startEmbeddedPostgres(dataDir, log);
  cleanup.push(() => database.stop());
  return database;
};

const query = async (url: string, sql: string): Promise<unknown[]> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
};

const lockFile = (dataDir: string): string => path.join(dataDir, 'postgres', 'postmaster.pid');

const state = (pid: number): string | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
};

const until = async (check: () => boolean, what: string): Promise<void> => {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

/** A process of the test's own, killed at the end. */
const track = (child: ChildProcess): ChildProcess => {
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
};

/**
 * Stops the server, then leaves a postmaster.pid as a crash would: the real file's contents with
 * the number replaced.
 */
const crashLeaving = async (
  dataDir: string,
  database: EmbeddedDatabase,
  pid: string,
): Promise<void> => {
  const lines = readFileSync(lockFile(dataDir), 'utf8').split('\n');
  await database.stop();
  lines[0] = pid;
  writeFileSync(lockFile(dataDir), lines.join('\n'));
};

const expectStartsWithData = async (dataDir: string): Promise<void> => {
  const database = await start(dataDir);
  expect(await query(database.url, 'SELECT value FROM kept')).toEqual([{ value: 'still here' }]);
  await database.stop();
};

const seeded = async (): Promise<{ dataDir: string; database: EmbeddedDatabase }> => {
  const dataDir = newDataDir();
  const database = await start(dataDir);
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  await client.query('CREATE TABLE kept (value text)');
  await client.query("INSERT INTO kept VALUES ('still here')");
  await client.end();
  return { dataDir, database };
};

describe('embedded PostgreSQL', () => {
  it('keeps its data across restarts and refuses a second server on the same DATA_DIR, naming the verified postmaster', async () => {
    const { dataDir, database } = await seeded();
    const pid = readFileSync(lockFile(dataDir), 'utf8').split('\n')[0];
    await expect(startEmbeddedPostgres(dataDir, log)).rejects.toThrow(
      new RegExp(`already running \\(pid ${pid}\\)`),
    );
    await database.stop();
    await expectStartsWithData(dataDir);
  });

  it.runIf(process.platform === 'linux')(
    'starts when postmaster.pid names an unrelated live process',
    async () => {
      const { dataDir, database } = await seeded();
      // As root, PostgreSQL runs as `postgres`; the stranger must be a process it may signal,
      // as a pid reused by the system PostgreSQL's backend would be.
      const stranger = track(
        spawn('sleep', ['600'], asRoot ? { uid: postgresId('-u'), gid: postgresId('-g') } : {}),
      );
      await until(() => state(stranger.pid as number) !== undefined, 'the stranger');
      await crashLeaving(dataDir, database, String(stranger.pid));
      await expectStartsWithData(dataDir);
      expect(stranger.exitCode).toBeNull();
      expect(stranger.signalCode).toBeNull();
      expect(existsSync(`${lockFile(dataDir)}.stale`)).toBe(true);
    },
  );

  it.runIf(process.platform === 'linux')(
    'starts when postmaster.pid names a zombie nobody reaps',
    async () => {
      const { dataDir, database } = await seeded();
      // `sleep 0` exits at once; its parent then becomes `sleep 600`, which never reaps it.
      const parent = track(
        spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 600'], {
          stdio: 'pipe',
          ...(asRoot ? { uid: postgresId('-u'), gid: postgresId('-g') } : {}),
        }),
      );
      const zombie = await new Promise<number>((resolve) =>
        parent.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
      );
      await until(() => state(zombie) === 'Z', 'the zombie');
      await crashLeaving(dataDir, database, String(zombie));
      await expectStartsWithData(dataDir);
    },
  );

  it('starts when postmaster.pid names no process, or nothing at all', async () => {
    const { dataDir, database } = await seeded();
    const gone = spawn('true');
    await new Promise((resolve) => gone.once('exit', resolve));
    await crashLeaving(dataDir, database, String(gone.pid));
    await expectStartsWithData(dataDir);
    writeFileSync(lockFile(dataDir), '');
    await expectStartsWithData(dataDir);
  });

  it.runIf(process.platform === 'linux')(
    'stops the PostgreSQL a killed process left behind, cleanly, and starts again',
    async () => {
      const { dataDir, database } = await seeded();
      await database.stop();
      const owner = track(
        spawn(
          process.execPath,
          ['--import', 'tsx', path.join('test', 'support', 'embedded-child.ts')],
          {
            cwd: SERVER_ROOT,
            env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir },
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        ),
      );
      await new Promise((resolve) => owner.stdout?.once('data', resolve));
      const orphan = Number(readFileSync(lockFile(dataDir), 'utf8').split('\n')[0]);
      owner.kill('SIGKILL');
      await new Promise((resolve) => owner.once('exit', resolve));
      expect(state(orphan)).toMatch(/^[RSD]$/);
      await expectStartsWithData(dataDir);
      expect(state(orphan) ?? 'Z').toBe('Z');
      // A clean stop leaves no lock file for anyone to set aside.
      expect(existsSync(`${lockFile(dataDir)}.stale`)).toBe(false);
    },
  );
});

describe('the relay’s database role', () => {
  it('is not a superuser and cannot run programs, but owns its database', async () => {
    const dataDir = newDataDir();
    const database = await start(dataDir);
    expect(
      await query(database.url, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user'),
    ).toEqual([{ rolsuper: false }]);
    await expect(query(database.url, "COPY (SELECT 1) TO PROGRAM 'true'")).rejects.toMatchObject({
      code: '42501',
    });
    await expect(
      query(
        database.url,
        "SELECT pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') AS m",
      ),
    ).resolves.toEqual([{ m: false }]);
    await query(database.url, 'CREATE TABLE mine (value int)');
    await query(database.url, 'ALTER TABLE mine SET (autovacuum_vacuum_threshold = 10)');
  });

  it('takes over the tables an earlier version created as the superuser', async () => {
    const dataDir = newDataDir();
    const first = await start(dataDir);
    const adminOnRelayDb = first.adminUrl.replace(/\/postgres$/, '/privcomm');
    await query(adminOnRelayDb, 'CREATE TABLE legacy (value int)');
    await query(adminOnRelayDb, 'CREATE SEQUENCE legacy_seq');
    await query(
      adminOnRelayDb,
      'CREATE FUNCTION legacy_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
    );
    await first.stop();
    const second = await start(dataDir);
    await query(second.url, 'INSERT INTO legacy VALUES (1)');
    await query(second.url, "SELECT nextval('legacy_seq')");
    expect(
      await query(
        second.url,
        "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname LIKE 'legacy%'",
      ),
    ).toEqual([{ owner: 'privcomm_relay' }]);
    await query(second.url, 'DROP FUNCTION legacy_fn()');
  });
});

describe('the first start’s password file', () => {
  it('is never readable by group or others, and never in the shared temporary directory', async () => {
    const dataDir = newDataDir();
    // A temporary directory like /tmp: open to every user, sticky.
    const sharedTmp = mkdtempSync(path.join(tmpdir(), 'privcomm-tmpdir-'));
    chmodSync(sharedTmp, 0o1777);
    cleanup.push(() => rmSync(sharedTmp, { recursive: true, force: true }));
    const seen = new Map<string, { mode: number; content: string }>();
    const look = (dir: string, depth: number): void => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      for (const entry of entries) {
        const file = path.join(dir, entry);
        if (file === path.join(dataDir, 'postgres')) continue; // PostgreSQL's own, mode 0700
        try {
          const stat = statSync(file);
          if (stat.isDirectory()) {
            if (depth > 0) look(file, depth - 1);
          } else if ((stat.mode & 0o077) !== 0) {
            // Read again at every look: the first may come between creation and writing.
            const content = readFileSync(file, 'utf8');
            if (content !== '') seen.set(file, { mode: stat.mode & 0o777, content });
          }
        } catch {
          // removed between listing and reading
        }
      }
    };
    const previous = process.env.TMPDIR;
    process.env.TMPDIR = sharedTmp;
    const watcher = setInterval(() => {
      look(sharedTmp, 1);
      look(dataDir, 2);
    }, 1);
    try {
      const database = await start(dataDir);
      await database.stop();
    } finally {
      clearInterval(watcher);
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
    }
    const password = readFileSync(path.join(dataDir, 'secrets', 'postgres_password'), 'utf8');
    const exposed = [...seen].filter(([, file]) => file.content.includes(password.trim()));
    expect(exposed).toEqual([]);
    expect(readdirSync(sharedTmp)).toEqual([]);
  });
});

describe.runIf(asRoot && process.platform === 'linux')('run by root', () => {
  it('refuses at once, in one line, a DATA_DIR inside a folder closed to the postgres user', async () => {
    const home = mkdtempSync(path.join(tmpdir(), 'privcomm-root-home-'));
    cleanup.push(() => rmSync(home, { recursive: true, force: true }));
    chmodSync(home, 0o700); // like /root
    const dataDir = path.join(home, 'data');
    const relay = spawn(process.execPath, ['--import', 'tsx', path.join('src', 'main.ts')], {
      cwd: SERVER_ROOT,
      env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(relay);
    let stderr = '';
    relay.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => relay.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(stderr).toContain(`${home} (mode 0700) is closed to it`);
    expect(stderr).toContain('DATABASE_URL');
    // Refused before anything was created for PostgreSQL.
    expect(existsSync(path.join(dataDir, 'postgres'))).toBe(false);
  });
});

const postgresId = (flag: string): number =>
  Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
