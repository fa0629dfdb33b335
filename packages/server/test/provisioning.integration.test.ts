import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { createTestDatabase, dumpDatabase } from './support/database.ts';
import { TestDevice, TestSocket, http } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * Device linking transport: a new device waits on the provisioning socket for one ciphertext that
 * the primary device PUTs to the socket's address, through one relay or across two. The relay
 * must store none of it and log neither the address nor the content.
 */
let database: { url: string; drop: () => Promise<void> };
let east: TestRelay;
let west: TestRelay;
/** A relay with a short provisioning timeout and a tight connection limit. */
let brief: TestRelay;

/** Every address handed out and every content sent: none may reach the database or the logs. */
const addresses = new Set<string>();
const contents = new Set<string>();

beforeAll(async () => {
  database = await createTestDatabase();
  east = await startRelay(database.url);
  west = await startRelay(database.url);
  brief = await startRelay(database.url, {
    PROVISIONING_TIMEOUT_MS: '500',
    RATE_LIMIT_REGISTRATION: '3/3600',
  });
});
afterAll(async () => {
  await east?.close();
  await west?.close();
  await brief?.close();
  await database?.drop();
});

const ADDRESS = /^[A-Za-z0-9_-]{32}$/;

const provisioningUrl = (relay: TestRelay): string =>
  relay.wsUrl.replace(/\/v1\/websocket$/, '/v1/provisioning');

/** Opens a provisioning socket and waits for its address (request 1). */
const openProvisioning = async (
  relay: TestRelay,
): Promise<{ socket: TestSocket; address: string }> => {
  const socket = await TestSocket.open(provisioningUrl(relay), null);
  await socket.until(() => socket.requests.length > 0, 5_000, 'provisioning.address');
  const first = socket.frames[0];
  expect(first).toEqual({
    type: 'request',
    id: 1,
    verb: 'provisioning.address',
    body: { address: expect.stringMatching(ADDRESS) },
  });
  const address = first.body.address as string;
  addresses.add(address);
  return { socket, address };
};

/** Fresh opaque bytes, remembered so that the leak checks can look for them. */
const ciphertext = (bytes = 200): string => {
  const content = randomBytes(bytes).toString('base64');
  contents.add(content);
  return content;
};

const provision = (primary: TestDevice, address: string, content: string) =>
  primary.request('PUT', `/v1/provisioning/${address}`, { content });

const messages = (socket: TestSocket): any[] =>
  socket.requests.filter((request) => request.verb === 'provisioning.message');

describe('the provisioning round trip', () => {
  it('hands the primary’s message to the waiting socket, which closes with 1000 once answered', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(east);
    expect((await socket.request('ping')).status).toBe(200);

    const content = ciphertext();
    const sent = await provision(primary, address, content);
    expect(sent.status).toBe(202);
    expect(sent.body).toEqual({});

    await socket.until(() => messages(socket).length === 1, 5_000, 'provisioning.message');
    expect(messages(socket)[0]).toEqual({
      type: 'request',
      id: 2,
      verb: 'provisioning.message',
      body: { content },
    });
    expect(socket.closeCode).toBeUndefined();
    socket.respond(2, 200);
    expect(await socket.closed).toBe(CLOSE_CODES.NORMAL);
  });

  it('crosses relay instances: socket on one, PUT to the other, at the 4096-byte limit', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(west);
    const content = ciphertext(4096);
    expect((await provision(primary, address, content)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'cross-instance message');
    expect(messages(socket)[0]?.body).toEqual({ content });
    socket.respond(2, 204);
    expect(await socket.closed).toBe(CLOSE_CODES.NORMAL);
  });

  it('keeps the socket open after a non-2xx answer, so the primary can send again', async () => {
    const primary = await TestDevice.register(west.url);
    const { socket, address } = await openProvisioning(east);
    const first = ciphertext();
    expect((await provision(primary, address, first)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'first message');
    socket.respond(2, 400);
    expect((await socket.request('ping')).status).toBe(200);
    expect(socket.closeCode).toBeUndefined();

    const second = ciphertext();
    expect((await provision(primary, address, second)).status).toBe(202);
    await socket.until(() => messages(socket).length === 2, 5_000, 'second message');
    expect(messages(socket)[1]).toMatchObject({ id: 3, body: { content: second } });
    socket.respond(3, 200);
    expect(await socket.closed).toBe(CLOSE_CODES.NORMAL);
  });

  it('closes with 1000 when a delivered message is not answered within 10 s', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(east);
    expect((await provision(primary, address, ciphertext())).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'message');
    await socket.until(() => socket.closeCode !== undefined, 15_000, 'close after no answer');
    expect(socket.closeCode).toBe(CLOSE_CODES.NORMAL);
  }, 20_000);

  it('drops a message to an address nobody holds (202, nothing stored)', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(west);
    const before = await dumpDatabase(database.url);
    const nobody = randomBytes(24).toString('base64url');
    addresses.add(nobody);
    const lost = ciphertext();
    const sent = await provision(primary, nobody, lost);
    expect(sent.status).toBe(202);
    expect(sent.body).toEqual({});
    const after = await dumpDatabase(database.url);
    expect(after).toBe(before);
    expect(after).not.toContain(nobody);

    // The waiting socket got nothing of it: the next message it receives is its own.
    const own = ciphertext();
    expect((await provision(primary, address, own)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'own message');
    expect(messages(socket).map((m) => m.body.content)).toEqual([own]);
    await socket.close();
  });
});

describe('refusals', () => {
  it('refuses a linked (non-primary) device with 403, and delivers nothing', async () => {
    const primary = await TestDevice.register(east.url);
    const linked = await TestDevice.link(primary);
    const { socket, address } = await openProvisioning(east);
    const refused = await provision(linked, address, ciphertext());
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');

    const allowed = ciphertext();
    expect((await provision(primary, address, allowed)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'primary’s message');
    expect(messages(socket).map((m) => m.body.content)).toEqual([allowed]);
    await socket.close();
  });

  it('refuses a malformed address or content with 400', async () => {
    const primary = await TestDevice.register(east.url);
    const valid = randomBytes(24).toString('base64url');
    for (const address of [
      valid.slice(1),
      `${valid}A`,
      `${valid.slice(1)}+`,
      `${valid.slice(1)}=`,
      `${valid.slice(2)}%2F`,
    ]) {
      const result = await provision(primary, address, ciphertext());
      expect(result.status, address).toBe(400);
      expect(result.body.error.code).toBe('VALIDATION_FAILED');
    }
    for (const body of [
      {},
      { content: 'not base64!' },
      { content: '' },
      { content: 'AA==', x: 1 },
    ]) {
      const result = await primary.request('PUT', `/v1/provisioning/${valid}`, body);
      expect(result.status, JSON.stringify(body)).toBe(400);
      expect(result.body.error.code).toBe('VALIDATION_FAILED');
    }
  });

  it('refuses content over 4096 bytes with 413 CONTENT_TOO_LARGE', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(east);
    const over = await provision(primary, address, ciphertext(4097));
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe('CONTENT_TOO_LARGE');

    const fits = ciphertext(4096);
    expect((await provision(primary, address, fits)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'message at the limit');
    expect(messages(socket).map((m) => m.body.content)).toEqual([fits]);
    await socket.close();
  });

  it('refuses a request without a valid token with 401', async () => {
    const primary = await TestDevice.register(east.url);
    const { socket, address } = await openProvisioning(east);
    const path = `/v1/provisioning/${address}`;
    const none = await http(east.url, 'PUT', path, { content: ciphertext() });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('UNAUTHENTICATED');
    const forged = await http(east.url, 'PUT', path, { content: ciphertext() }, 'not.a.token');
    expect(forged.status).toBe(401);

    const allowed = ciphertext();
    expect((await provision(primary, address, allowed)).status).toBe(202);
    await socket.until(() => messages(socket).length === 1, 5_000, 'authenticated message');
    expect(messages(socket).map((m) => m.body.content)).toEqual([allowed]);
    await socket.close();
  });

  it('answers a plain GET of the socket route with 426', async () => {
    const result = await http(east.url, 'GET', '/v1/provisioning');
    expect(result.status).toBe(426);
    expect(result.body.error.code).toBe('UPGRADE_REQUIRED');
  });
});

describe('the provisioning socket', () => {
  it('answers unknown verbs with 404 and invalid frames with error frames, then closes with 4400', async () => {
    const { socket } = await openProvisioning(west);
    const unknown = await socket.request('auth', { token: 'x' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('NOT_FOUND');
    for (let i = 0; i < 21; i += 1) socket.sendRaw('not json');
    expect(await socket.closed).toBe(CLOSE_CODES.PROTOCOL_VIOLATION);
    const errors = socket.frames.filter((frame) => frame.type === 'error');
    expect(errors).toHaveLength(20);
    expect(errors[0]).toMatchObject({ code: 'MALFORMED_JSON' });
  });

  it('closes with 4408 after PROVISIONING_TIMEOUT_MS', async () => {
    const { socket } = await openProvisioning(brief);
    await socket.until(() => socket.closeCode !== undefined, 5_000, 'provisioning timeout');
    expect(socket.closeCode).toBe(CLOSE_CODES.TIMEOUT);
    // The relay let go of it: no socket left open on that instance.
    const gauge = await brief.relay.context.metrics.wsConnections.get();
    expect(gauge.values[0]?.value).toBe(0);
  });

  it('limits connections per client address with the registration limiter (4429)', async () => {
    // The limit is 3 per hour and the timeout test above used one.
    for (let i = 0; i < 2; i += 1) await (await openProvisioning(brief)).socket.close();
    const refused = await TestSocket.open(provisioningUrl(brief), null);
    expect(await refused.closed).toBe(CLOSE_CODES.SLOW_CONSUMER);
    expect(refused.requests).toEqual([]);
  });
});

describe('what the relay keeps', () => {
  it('documents the routes in OpenAPI under the provisioning tag', async () => {
    const spec = await http(east.url, 'GET', '/openapi.json');
    expect(spec.body.paths['/v1/provisioning/{address}'].put.tags).toEqual(['provisioning']);
    expect(spec.body.paths['/v1/provisioning'].get.tags).toEqual(['provisioning']);
  });

  it('stores nothing of provisioning and logs neither addresses nor contents', async () => {
    expect(addresses.size).toBeGreaterThan(10);
    expect(contents.size).toBeGreaterThan(10);
    const dump = await dumpDatabase(database.url);
    const logs = [...east.logs, ...west.logs, ...brief.logs].join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const address of addresses) {
      expect(dump).not.toContain(address);
      expect(logs).not.toContain(address);
    }
    for (const content of contents) {
      const hex = Buffer.from(content, 'base64').toString('hex');
      expect(dump).not.toContain(content);
      expect(dump).not.toContain(hex.slice(0, 64));
      expect(logs).not.toContain(content);
      expect(logs).not.toContain(content.slice(0, 40));
    }
  });
});
