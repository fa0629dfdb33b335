import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket, http } from './support/client.ts';
import { runServerScript, spawnRelay, startRelay, type TestRelay } from './support/relay.ts';

let relay: TestRelay;
let database: { url: string; drop: () => Promise<void> };

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await startRelay(database.url, { METRICS_TOKEN: 'metrics-secret' });
});
afterAll(async () => {
  await relay?.close();
  await database?.drop();
});

describe('operations endpoints', () => {
  it('a plain GET of the socket route gets 426 with a catalogue error', async () => {
    const result = await http(relay.url, 'GET', '/v1/websocket');
    expect(result.status).toBe(426);
    expect(result.body.error.code).toBe('UPGRADE_REQUIRED');
  });

  it('/health and /ready answer', async () => {
    expect(await http(relay.url, 'GET', '/health')).toMatchObject({
      status: 200,
      body: { status: 'ok' },
    });
    expect(await http(relay.url, 'GET', '/ready')).toMatchObject({
      status: 200,
      body: { status: 'ready' },
    });
  });

  it('serves the OpenAPI document and Swagger UI (docs.integration.test.ts checks the pages)', async () => {
    const spec = await http(relay.url, 'GET', '/openapi.json');
    expect(spec.status).toBe(200);
    expect(spec.body.openapi).toBe('3.1.0');
    for (const route of [
      '/v1/accounts',
      '/v1/auth/token',
      '/v1/keys/{accountId}/{deviceId}',
      '/v1/messages/{accountId}',
    ]) {
      expect(Object.keys(spec.body.paths)).toContain(route);
    }
    const swagger = await http(relay.url, 'GET', '/docs/');
    expect(swagger.status).toBe(200);
    expect(swagger.body).toContain('swagger');
  });

  it('/metrics requires its token and has no per-account labels', async () => {
    expect((await http(relay.url, 'GET', '/metrics')).status).toBe(401);
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await alice.send(bob.accountId, [bob.address()], 'counted');
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.envelopes().length === 1);
    await socket.close();
    const response = await fetch(`${relay.url}/metrics`, {
      headers: { authorization: 'Bearer metrics-secret' },
    });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toMatch(/privcomm_envelopes_stored_total \d+/);
    expect(text).toMatch(
      /privcomm_http_requests_total\{route="\/v1\/messages\/:accountId",status="200"\} \d+/,
    );
    for (const id of [alice.accountId, bob.accountId]) expect(text).not.toContain(id);
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/);
  });
});

describe('starting from nothing', () => {
  it('`npm start` equivalent: embedded PostgreSQL, secrets outside DATA_DIR, docs served', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-start-'));
    // The layout of an older relay: its token key inside DATA_DIR, where a backup of the data
    // would carry it. The relay moves it out at start and says so.
    mkdirSync(path.join(dataDir, 'secrets'), { mode: 0o700 });
    const oldKey = randomBytes(32).toString('base64');
    writeFileSync(path.join(dataDir, 'secrets', 'jwt_secret'), oldKey, { mode: 0o600 });
    const fresh = await spawnRelay('', { DATABASE_URL: '', JWT_SECRET: '', DATA_DIR: dataDir });
    try {
      for (const route of ['/health', '/docs/', '/openapi.json']) {
        expect((await http(fresh.url, 'GET', route)).status).toBe(200);
      }
      const moved = path.join(`${dataDir}-secrets`, 'jwt_secret');
      expect(statSync(moved).mode & 0o777).toBe(0o600);
      expect(readFileSync(moved, 'utf8')).toBe(oldKey);
      expect(existsSync(path.join(dataDir, 'secrets', 'jwt_secret'))).toBe(false);
      const logs = fresh.logs.join('\n');
      expect(logs).toContain('moved secrets out of DATA_DIR/secrets into SECRETS_DIR');
      expect(logs).toContain('"database":"embedded"');
    } finally {
      expect(await fresh.stop()).toBe(0);
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(`${dataDir}-secrets`, { recursive: true, force: true });
    }
  });

  it('refuses to start with a configuration error that names the variable', async () => {
    const result = await runServerScript('main.ts', [], {
      PORT: 'eighty',
      DATABASE_URL: database.url,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('PORT');
  });
});

describe('operator commands', () => {
  it('`npm run migrate` reports an up-to-date database', async () => {
    const result = await runServerScript('cli/migrate.ts', [], { DATABASE_URL: database.url });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('database is up to date');
  });

  it('`npm run admin -- invite create` prints codes that register accounts', async () => {
    const result = await runServerScript(
      'cli/admin.ts',
      ['invite', 'create', '--count', '2', '--uses', '1'],
      {
        DATABASE_URL: database.url,
      },
    );
    expect(result.code).toBe(0);
    const codes = result.stdout.trim().split('\n');
    expect(codes).toHaveLength(2);
    const inviteOnly = await startRelay(database.url, { REGISTRATION: 'invite' });
    try {
      const device = new TestDevice(inviteOnly.url);
      const first = await http(
        inviteOnly.url,
        'POST',
        '/v1/accounts',
        device.registrationBody({ inviteCode: codes[0] }),
      );
      expect(first.status).toBe(200);
      const again = await http(
        inviteOnly.url,
        'POST',
        '/v1/accounts',
        device.registrationBody({ inviteCode: codes[0] }),
      );
      expect(again.body.error.code).toBe('INVITE_INVALID');
    } finally {
      await inviteOnly.close();
    }
  });

  it('admin refuses bad arguments with usage and exit code 2', async () => {
    const result = await runServerScript('cli/admin.ts', ['invite', 'create', '--uses', 'lots'], {
      DATABASE_URL: database.url,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--uses must be an integer');
    expect(result.stderr).toContain('Usage:');
  });
});
