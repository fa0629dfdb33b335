import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * The client address behind a reverse proxy. A real forwarding proxy (a few lines of node:http
 * doing what nginx's `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` does: append
 * the peer it sees) sits between real clients and a real relay. Clients connect from different
 * loopback addresses (127.0.0.2, 127.0.0.3), so the proxy sees different peers, and each writes
 * whatever X-Forwarded-For it likes.
 */

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A forwarding proxy that appends the address of its peer to X-Forwarded-For. */
const startProxy = async (target: string): Promise<{ url: string; close: () => Promise<void> }> => {
  const upstream = new URL(target);
  const server: Server = createServer((incoming, outgoing) => {
    const seen = incoming.socket.remoteAddress ?? '';
    const previous = incoming.headers['x-forwarded-for'];
    const forwarded = previous === undefined ? seen : `${String(previous)}, ${seen}`;
    const proxied = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: { ...incoming.headers, 'x-forwarded-for': forwarded },
      },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    proxied.on('error', () => outgoing.destroy());
    incoming.pipe(proxied);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

/** POSTs JSON from a chosen local address, with a chosen X-Forwarded-For. */
const post = (
  url: string,
  path: string,
  body: unknown,
  from: string,
  forwardedFor?: string,
): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const target = new URL(url);
    const payload = JSON.stringify(body);
    const sent = request(
      {
        host: target.hostname,
        port: target.port,
        method: 'POST',
        path,
        localAddress: from,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }),
        },
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () =>
          resolve({
            status: answer.statusCode ?? 0,
            headers: answer.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    sent.on('error', reject);
    sent.end(payload);
  });

const register = (url: string, from: string, forwardedFor?: string): Promise<Reply> =>
  post(url, '/v1/accounts', new TestDevice(url).registrationBody(), from, forwardedFor);

let databaseUrl: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
});
afterAll(async () => {
  await drop?.();
});

describe.each([
  ['a hop count', '1'],
  ['the proxy address', '127.0.0.1'],
  ['a CIDR range holding the proxy', '127.0.0.1/32,10.0.0.0/8'],
])('behind one proxy, with TRUST_PROXY set to %s', (_name, trustProxy) => {
  let relay: TestRelay;
  let proxy: { url: string; close: () => Promise<void> };
  beforeAll(async () => {
    relay = await startRelay(databaseUrl, {
      TRUST_PROXY: trustProxy,
      // A proxy in front makes `auto` invitation-only; these tests are about the address.
      REGISTRATION: 'open',
      RATE_LIMIT_REGISTRATION: '6/30',
    });
    proxy = await startProxy(relay.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await relay?.close();
  });

  it('a client rotating X-Forwarded-For meets 429 after its burst; another client does not', async () => {
    const statuses: number[] = [];
    let refused: Reply | undefined;
    for (let i = 0; i < 200; i += 1) {
      // A fresh documentation address each time, even two of them, as an attacker would write.
      const forged = `198.51.100.${i % 250}, 203.0.113.${(i * 7) % 250}`;
      const reply = await register(proxy.url, '127.0.0.2', forged);
      statuses.push(reply.status);
      if (reply.status === 429) refused ??= reply;
    }
    expect(statuses.filter((status) => status === 200)).toHaveLength(6);
    expect(statuses.filter((status) => status === 429)).toHaveLength(194);
    expect(JSON.parse(refused?.body ?? '{}')).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect(Number(refused?.headers['retry-after'])).toBeGreaterThan(0);

    // The limit is keyed by the address the proxy saw, not by the proxy: a neighbour is unaffected.
    expect((await register(proxy.url, '127.0.0.3')).status).toBe(200);
    expect((await register(proxy.url, '127.0.0.3', '127.0.0.2')).status).toBe(200);
  });
});

describe('without a trusted proxy', () => {
  it('X-Forwarded-For sent straight to the relay changes nothing', async () => {
    const relay = await startRelay(databaseUrl, {
      TRUST_PROXY: '127.0.0.9',
      REGISTRATION: 'open',
      RATE_LIMIT_REGISTRATION: '3/30',
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 10; i += 1) {
        statuses.push((await register(relay.url, '127.0.0.4', `198.51.100.${i}`)).status);
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    } finally {
      await relay.close();
    }
  });
});
