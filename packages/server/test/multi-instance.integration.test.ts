import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { createTestDatabase, dumpDatabase } from './support/database.ts';
import { TestDevice, TestSocket, http } from './support/client.ts';
import { spawnRelay, type RelayProcess } from './support/relay.ts';

/**
 * Two relay processes on one database, as an operator would run them behind a load balancer.
 * Afterwards the logs of both and a dump of the database are searched for anything identifying.
 */
let database: { url: string; drop: () => Promise<void> };
let east: RelayProcess;
let west: RelayProcess;
const secrets = new Set<string>();
/** Contents sent through the relay; they must never reach its logs. */
const plaintexts: string[] = [];

const remember = (device: TestDevice): TestDevice => {
  secrets.add(device.accountId);
  secrets.add(device.token);
  return device;
};

beforeAll(async () => {
  database = await createTestDatabase();
  [east, west] = await Promise.all([spawnRelay(database.url), spawnRelay(database.url)]);
});
afterAll(async () => {
  await Promise.all([east?.stop(), west?.stop()]);
  await database?.drop();
});

describe('several relay processes on one database', () => {
  it('deliver envelopes to sockets held by the other process, live and queued', async () => {
    const alice = remember(await TestDevice.register(east.url));
    const bob = remember(await TestDevice.register(west.url));
    const bobSocket = await TestSocket.connect(west.wsUrl, bob);
    await bobSocket.until(() => bobSocket.requests.some((r) => r.verb === 'queue.empty'));
    const live = 'plaintext-marker-live-4f1c';
    plaintexts.push(live);
    expect((await alice.send(bob.accountId, [bob.address()], live)).status).toBe(200);
    await bobSocket.until(
      () => bobSocket.envelopes().length === 1,
      5_000,
      'cross-process delivery',
    );
    expect(bobSocket.texts()).toEqual([live]);

    // And back, while alice is offline: queued, then drained from the other process.
    alice.baseUrl = west.url;
    bob.baseUrl = east.url;
    const queued = 'plaintext-marker-queued-9a2e';
    plaintexts.push(queued);
    expect((await bob.send(alice.accountId, [alice.address()], queued)).status).toBe(200);
    const aliceSocket = await TestSocket.connect(east.wsUrl, alice);
    await aliceSocket.until(() => aliceSocket.envelopes().length === 1);
    expect(aliceSocket.texts()).toEqual([queued]);
    await Promise.all([aliceSocket.close(), bobSocket.close()]);
  });

  it('a socket on one process is replaced by a newer one on the other (4409)', async () => {
    const carol = remember(await TestDevice.register(east.url));
    const first = await TestSocket.connect(east.wsUrl, carol);
    const second = await TestSocket.connect(west.wsUrl, carol);
    expect(await first.closed).toBe(CLOSE_CODES.CONNECTED_ELSEWHERE);
    const ping = await second.request('ping');
    expect(ping.status).toBe(200);
    await second.close();
  });

  it('removing a device closes its socket on the other process within 2 s and refuses its token', async () => {
    const dave = remember(await TestDevice.register(east.url));
    const laptop = remember(await TestDevice.link(dave));
    laptop.baseUrl = west.url;
    const socket = await TestSocket.connect(west.wsUrl, laptop);
    const removedAt = Date.now();
    expect((await dave.request('DELETE', `/v1/devices/${laptop.deviceId}`)).status).toBe(204);
    expect(await socket.closed).toBe(CLOSE_CODES.UNAUTHENTICATED);
    const closedWithinMs = Date.now() - removedAt;
    expect(closedWithinMs).toBeLessThan(2_000);
    expect((await laptop.request('GET', '/v1/devices')).status).toBe(401);
    const retry = await TestSocket.open(west.wsUrl);
    await retry.request('auth', { token: laptop.token });
    expect(await retry.closed).toBe(CLOSE_CODES.UNAUTHENTICATED);
  });

  it('keeps accepted envelopes across a relay restart between send and receive', async () => {
    const erin = remember(await TestDevice.register(east.url));
    const frank = remember(await TestDevice.register(east.url));
    const text = 'plaintext-marker-restart-77b0';
    plaintexts.push(text);
    expect((await erin.send(frank.accountId, [frank.address()], text)).status).toBe(200);
    expect(await east.stop('SIGTERM')).toBe(0);
    const restarted = await spawnRelay(database.url);
    try {
      frank.baseUrl = restarted.url;
      await frank.authenticate();
      secrets.add(frank.token);
      const socket = await TestSocket.connect(restarted.wsUrl, frank);
      await socket.until(() => socket.envelopes().length === 1);
      expect(socket.texts()).toEqual([text]);
      await socket.close();
    } finally {
      await restarted.stop();
      east.logs.push(...restarted.logs);
    }
  });

  it('leaves no identifier, token, address or plaintext in the logs or the database', async () => {
    // One envelope stays queued, so the dump has a stored ciphertext to inspect.
    const grace = remember(await TestDevice.register(west.url));
    const henry = remember(await TestDevice.register(west.url));
    const pending = 'plaintext-marker-pending-c3d5';
    plaintexts.push(pending);
    expect((await grace.send(henry.accountId, [henry.address()], pending)).status).toBe(200);

    const logs = [...east.logs, ...west.logs].join('\n');
    // The processes ran at trace level: if anything identifying were logged, it would be here.
    expect(logs.length).toBeGreaterThan(0);
    expect(logs).toContain('relay listening');
    for (const secret of secrets) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    expect(logs).not.toMatch(/\b127\.0\.0\.1\b|::1|::ffff:/);
    for (const text of plaintexts) {
      expect(logs).not.toContain(text);
      expect(logs).not.toContain(Buffer.from(text).toString('base64'));
    }

    const dump = await dumpDatabase(database.url);
    expect(dump).toContain('-- envelopes');
    // The test clients send these markers as their (opaque) ciphertext. Delivered envelopes are
    // deleted on acknowledgement, so no delivered content may remain; the one pending envelope
    // is stored exactly once, in its envelope row.
    const hex = (text: string) => Buffer.from(text).toString('hex');
    for (const text of plaintexts.filter((t) => t !== pending)) {
      expect(dump).not.toContain(hex(text));
    }
    const pendingLines = dump.split('\n').filter((line) => line.includes(hex(pending)));
    expect(pendingLines).toHaveLength(1);
    expect(pendingLines[0]).toContain('"stored_hour"');
    for (const text of plaintexts) {
      expect(dump).not.toContain(text);
      expect(dump).not.toContain(Buffer.from(text).toString('base64'));
    }
    expect(dump).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    expect(dump).not.toMatch(/\b127\.0\.0\.1\b/);
    // Timestamps are coarse: dates, or whole hours for stored envelopes. The only finer ones
    // are expiry deadlines of short-lived challenges and link tokens.
    const envelopeRows = dump
      .split('\n')
      .filter((line) => line.includes('"stored_hour"'))
      .map((line) => JSON.parse(line) as { stored_hour: string; expires_at: string });
    expect(envelopeRows.length).toBeGreaterThanOrEqual(1);
    for (const row of envelopeRows) {
      expect(row.stored_hour).toMatch(/T\d\d:00:00(\+00:00|Z)?$/);
      expect(row.expires_at).toMatch(/T\d\d:00:00(\+00:00|Z)?$/);
    }
  });

  it('the surviving process is still healthy and ready', async () => {
    expect((await http(west.url, 'GET', '/health')).status).toBe(200);
    expect((await http(west.url, 'GET', '/ready')).body).toEqual({ status: 'ready' });
  });
});
