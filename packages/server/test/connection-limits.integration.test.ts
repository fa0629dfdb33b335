import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * What one host can hold open without authenticating: a connection that sends its headers slowly,
 * and WebSockets that never authenticate. Also: ciphertext base64 must be spelled canonically.
 */

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;
const extra: TestRelay[] = [];

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  databaseUrl = database.url;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await Promise.all(extra.map((r) => r.close()));
  await relay?.close();
  await drop?.();
});

/** SECURITY.md and docs/configuration.md promise that a request gets at most this long. */
const DOCUMENTED_REQUEST_TIMEOUT_MS = 30_000;

describe('slow headers', () => {
  it('closes a connection that sends its headers a byte at a time once the documented 30 s are over', async () => {
    const url = new URL(relay.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const opened = Date.now();
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    // One byte of an endless header every second: the connection is never idle.
    const drip = setInterval(() => socket.write('a'), 1_000);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    const closedAfter = await new Promise<number>((resolve) => {
      const give = setTimeout(() => resolve(Number.POSITIVE_INFINITY), 45_000);
      socket.once('close', () => {
        clearTimeout(give);
        resolve(Date.now() - opened);
      });
    });
    clearInterval(drip);
    socket.destroy();
    // Closed by the relay within the documented limit plus a margin for the relay's 1 s check
    // and a busy machine (Node's own default held it 60-90 s).
    expect(closedAfter).toBeLessThan(DOCUMENTED_REQUEST_TIMEOUT_MS + 10_000);
    // Closed by the timeout, which answers 408, not by some other rule (a parse error: 400).
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  }, 60_000);
});

/** Opens a WebSocket from a given loopback source address; resolves once open or refused. */
const openFrom = (
  wsUrl: string,
  localAddress: string,
): Promise<{ socket: WebSocket; status: number }> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl, { localAddress });
    socket.once('open', () => resolve({ socket, status: 101 }));
    socket.once('unexpected-response', (_request, response) => {
      resolve({ socket, status: response.statusCode ?? 0 });
      response.resume();
    });
    socket.once('error', reject);
  });

const closed = (socket: WebSocket): Promise<void> =>
  socket.readyState === WebSocket.CLOSED
    ? Promise.resolve()
    : new Promise((resolve) => socket.once('close', () => resolve()));

describe('unauthenticated sockets per address', () => {
  it('caps the sockets one address holds without authenticating; others and authenticated ones are not affected', async () => {
    const capped = await startRelay(databaseUrl, { WS_UNAUTHENTICATED_PER_ADDRESS: '3' });
    extra.push(capped);
    const provisioningUrl = capped.wsUrl.replace('/v1/websocket', '/v1/provisioning');
    const held = [
      await openFrom(capped.wsUrl, '127.0.0.5'),
      await openFrom(capped.wsUrl, '127.0.0.5'),
      await openFrom(provisioningUrl, '127.0.0.5'),
    ];
    expect(held.map((h) => h.status)).toEqual([101, 101, 101]);
    // The fourth from the same address is refused before the upgrade, on both socket routes.
    expect((await openFrom(capped.wsUrl, '127.0.0.5')).status).toBe(429);
    expect((await openFrom(provisioningUrl, '127.0.0.5')).status).toBe(429);
    // Another address is not affected.
    const other = await openFrom(capped.wsUrl, '127.0.0.6');
    expect(other.status).toBe(101);

    // A socket that authenticates stops counting: its place is free again.
    const device = await TestDevice.register(capped.url);
    const first = held[0]?.socket as WebSocket;
    const authenticated = new Promise<unknown>((resolve) =>
      first.on('message', (data: Buffer) => resolve(JSON.parse(data.toString('utf8')))),
    );
    first.send(
      JSON.stringify({ type: 'request', id: 1, verb: 'auth', body: { token: device.token } }),
    );
    expect(await authenticated).toMatchObject({ type: 'response', id: 1, status: 200 });
    const freed = await openFrom(capped.wsUrl, '127.0.0.5');
    expect(freed.status).toBe(101);
    expect((await openFrom(capped.wsUrl, '127.0.0.5')).status).toBe(429);

    // A socket that closes frees its place too.
    const second = held[1]?.socket as WebSocket;
    second.close();
    await closed(second);
    await expect
      .poll(async () => {
        const attempt = await openFrom(capped.wsUrl, '127.0.0.5');
        attempt.socket.terminate();
        return attempt.status;
      })
      .toBe(101);

    for (const socket of [...held.map((h) => h.socket), other.socket, freed.socket]) {
      socket.terminate();
    }
  });
});

describe('ciphertext base64', () => {
  it('refuses a non-canonical spelling (non-zero bits before the padding) with 400', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const send = (content: string) =>
      alice.request('PUT', `/v1/messages/${bob.accountId}`, {
        messages: [{ ...bob.address(), type: 1, content }],
      });
    for (const content of ['AB==', 'AAB=', 'aGVsbG9=', 'aGVsbG+=']) {
      // Each decodes (Node ignores the extra bits), which is why the schema must say no.
      expect(Buffer.from(content, 'base64').length).toBeGreaterThan(0);
      const refused = await send(content);
      expect({ content, status: refused.status, code: refused.body?.error?.code }).toEqual({
        content,
        status: 400,
        code: 'VALIDATION_FAILED',
      });
    }
    // Control: the canonical spellings of the same bytes are stored.
    for (const content of ['AA==', 'AAA=', 'aGVsbG8=']) {
      expect((await send(content)).status).toBe(200);
    }
  });
});
