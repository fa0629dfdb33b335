import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { http, TestDevice } from './support/client.ts';
import { startCoturn } from './support/coturn.ts';
import { createTestDatabase } from './support/database.ts';
import { runServerScript, startRelay } from './support/relay.ts';

/** A UDP port nothing answers on: privileged, so no test binds it. */
const CLOSED_UDP_PORT = 9;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const admin = (args: string[], env: Record<string, string>) =>
  runServerScript('cli/admin.ts', args, env);

const database = async (): Promise<string> => {
  const created = await createTestDatabase();
  cleanup.push(() => created.drop());
  return created.url;
};

const sql = async (url: string, statement: string): Promise<void> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(statement);
  await client.end();
};

const tableCount = async (url: string): Promise<number> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const result = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'",
  );
  await client.end();
  return result.rows[0]?.n ?? -1;
};

describe('npm run admin', () => {
  it('works on a fresh DATA_DIR without `npm run migrate` first', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-admin-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const result = await admin(['invite', 'create'], { DATA_DIR: dataDir, JWT_SECRET: '' });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^[A-Za-z0-9_-]{22}\n$/);
  });

  it('says to run `npm run migrate` when it may not migrate itself', async () => {
    const url = await database();
    const result = await admin(['invite', 'create'], {
      DATABASE_URL: url,
      MIGRATE_ON_START: 'false',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^admin failed: the database lacks migration 0000_initial\b.*: run `npm run migrate` \(MIGRATE_ON_START=false\)\n$/,
    );
  });

  it('never prints a failed query or its parameters', async () => {
    const url = await database();
    expect((await runServerScript('cli/migrate.ts', [], { DATABASE_URL: url })).code).toBe(0);
    await sql(url, 'DROP TABLE invite_codes');
    const result = await admin(['invite', 'create', '--uses', '987'], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'admin failed: database error 42P01 (a table is missing: run `npm run migrate`)\n',
    );
    expect(result.stdout).toBe('');
  });
});

describe('npm run admin: invites, statistics, purge, check', () => {
  it('lists invite codes by id and revokes them by id or by code', async () => {
    const url = await database();
    const created = await admin(['invite', 'create', '--count', '3', '--uses', '2'], {
      DATABASE_URL: url,
    });
    expect(created.code, created.stderr).toBe(0);
    const codes = created.stdout.trim().split('\n');
    const idOf = (code: string) => createHash('sha256').update(code).digest('hex').slice(0, 12);

    const listed = await admin(['invite', 'list', '--json'], { DATABASE_URL: url });
    expect(listed.code).toBe(0);
    const invites = listed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(invites.map((invite) => invite.id).sort()).toEqual(codes.map(idOf).sort());
    expect(invites.every((invite) => invite.usesLeft === 2)).toBe(true);
    // The codes themselves are never shown again.
    for (const code of codes) expect(listed.stdout).not.toContain(code);

    const byId = await admin(['invite', 'revoke', idOf(codes[0]!).slice(0, 8)], {
      DATABASE_URL: url,
    });
    expect(byId).toMatchObject({
      code: 0,
      stdout: `revoked invite ${idOf(codes[0]!).slice(0, 8)}\n`,
    });
    const byCode = await admin(['invite', 'revoke', codes[1]!], { DATABASE_URL: url });
    expect(byCode).toMatchObject({ code: 0, stdout: `revoked invite ${idOf(codes[1]!)}\n` });
    const again = await admin(['invite', 'revoke', codes[1]!], { DATABASE_URL: url });
    expect(again).toMatchObject({
      code: 2,
      stderr: `admin: no invite code ${idOf(codes[1]!)}: see \`invite list\`\n`,
    });
    const text = await admin(['invite', 'list'], { DATABASE_URL: url });
    expect(text.stdout.trim().split('\n')).toEqual([
      'id            uses left  expires                   created',
      expect.stringMatching(
        new RegExp(
          `^${idOf(codes[2]!)}\\s+2\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\s+\\d{4}-\\d\\d-\\d\\d$`,
        ),
      ),
    ]);

    // A revoked code no longer registers anyone; the remaining one does.
    const relay = await startRelay(url, { REGISTRATION: 'invite' });
    try {
      const register = (inviteCode: string) =>
        http(
          relay.url,
          'POST',
          '/v1/accounts',
          new TestDevice(relay.url).registrationBody({ inviteCode }),
        );
      expect((await register(codes[0]!)).body.error.code).toBe('INVITE_INVALID');
      expect((await register(codes[2]!)).status).toBe(200);
    } finally {
      await relay.close();
    }
    // Six admin processes, each compiling the sources through tsx: minutes on a loaded machine.
  }, 240_000);

  it('prints statistics that count everyone and name no one', async () => {
    const url = await database();
    const relay = await startRelay(url);
    let ids: string[];
    try {
      const [alice, bob] = [
        await TestDevice.register(relay.url),
        await TestDevice.register(relay.url),
      ];
      expect((await alice.send(bob.accountId, [bob.address()], 'ciphertext')).status).toBe(200);
      ids = [alice.accountId, bob.accountId];
    } finally {
      await relay.close();
    }
    const result = await admin(['stats', '--json'], { DATABASE_URL: url });
    expect(result.code, result.stderr).toBe(0);
    const stats = JSON.parse(result.stdout);
    expect(stats).toMatchObject({
      accounts: 2,
      devices: 2,
      devicesSeen: { today: 2, week: 2, month: 2 },
      queued: { envelopes: 1, bytes: 'ciphertext'.length, devices: 1 },
      usableInvites: 0,
    });
    expect(stats.databaseBytes).toBeGreaterThan(0);
    const text = await admin(['stats'], { DATABASE_URL: url });
    expect(text.stdout).toContain('accounts                2\n');
    for (const id of ids) {
      expect(result.stdout).not.toContain(id);
      expect(text.stdout).not.toContain(id);
    }
  });

  it('purges expired data now', async () => {
    const url = await database();
    expect((await admin(['invite', 'create', '--count', '2'], { DATABASE_URL: url })).code).toBe(0);
    await sql(url, "UPDATE invite_codes SET expires_at = now() - interval '1 day'");
    const purged = await admin(['purge'], { DATABASE_URL: url });
    expect(purged.code, purged.stderr).toBe(0);
    expect(purged.stdout).toMatch(/^removed 2 expired rows /);
    expect((await admin(['purge'], { DATABASE_URL: url })).stdout).toMatch(/^removed 0 /);
  });

  it('checks the configuration, the database and TURN, and changes nothing', async () => {
    const url = await database();
    const fresh = await admin(['check'], { DATABASE_URL: url, MIGRATE_ON_START: 'false' });
    expect(fresh.code).toBe(1);
    expect(fresh.stdout).toMatch(/^ok {4}configuration: /m);
    expect(fresh.stdout).toMatch(
      /^ok {4}database 127\.0\.0\.1:\d+\/privcomm_test_\w+: PostgreSQL (1[5-9]|[2-9]\d)$/m,
    );
    expect(fresh.stdout).toMatch(/^FAIL {2}schema: the database lacks migration 0000_initial\b/m);
    // check never migrates.
    expect(await tableCount(url)).toBe(0);

    const pending = await admin(['check'], { DATABASE_URL: url });
    expect(pending.code).toBe(0);
    expect(pending.stdout).toContain(
      'ok    schema: migrations pending; the relay applies them at start',
    );
    expect(pending.stdout).toContain('warn  TURN: TURN_URLS unset');

    const coturn = await startCoturn();
    cleanup.push(() => coturn.stop());
    const turn = await admin(['check'], {
      DATABASE_URL: url,
      TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=udp,turn:127.0.0.1:${CLOSED_UDP_PORT}`,
      TURN_SECRET: coturn.secret,
    });
    expect(turn.code).toBe(1);
    expect(turn.stdout).toContain(`ok    TURN: 127.0.0.1:${coturn.port} answers STUN\n`);
    expect(turn.stdout).toContain(
      `FAIL  TURN: 127.0.0.1:${CLOSED_UDP_PORT} does not answer STUN over UDP: start coturn, or open the port\n`,
    );

    const unreachable = await admin(['check'], {
      DATABASE_URL: 'postgres://relay:hunter2@127.0.0.1:2/privcomm',
    });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout).toContain(
      'FAIL  cannot use the database at 127.0.0.1:2/privcomm: nothing listens there',
    );
    expect(unreachable.stdout + unreachable.stderr).not.toContain('hunter2');
  });

  it('refuses an unknown command or stray arguments with the help, exit 2', async () => {
    for (const args of [['frobnicate'], [], ['stats', 'extra'], ['invite', 'revoke']]) {
      const result = await admin(args, { DATABASE_URL: 'postgres://relay@127.0.0.1:2/privcomm' });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stdout).toBe('');
    }
  });
});
