import { describe, expect, it } from 'vitest';
import type { SocketSendRequest } from '@privcomm/wire';
import { ClientError } from '../src/errors.ts';
import { RelayApi } from '../src/relay-api.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';
import type { HttpResponse, Transport } from '../src/transport.ts';

const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');
const ALICE = {
  accountId: accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'),
  deviceId: deviceIdOf(1),
};
const request = { messages: [{ deviceId: 1, registrationId: 7, type: 1, content: 'AAAA' }] };

/**
 * A RelayApi whose HTTP side records each request and answers 200 (a token first, for the
 * login), and a clock the test moves.
 */
const api = () => {
  const http: string[] = [];
  let nowMs = 1_000_000;
  const transport: Transport = {
    relayUrl: 'http://relay.test',
    fetch: async (url, init) => {
      const path = new URL(url).pathname;
      http.push(`${init.method} ${path}`);
      const body =
        path === '/v1/auth/challenge'
          ? {
              nonce: Buffer.alloc(32).toString('base64'),
              expiresAt: new Date(nowMs + 60_000).toISOString(),
            }
          : path === '/v1/auth/token'
            ? { token: 't', expiresAt: new Date(nowMs + 300_000).toISOString() }
            : { stored: 1 };
      return { status: 200, text: async () => JSON.stringify(body) };
    },
    openSocket: () => {
      throw new Error('no socket here');
    },
  };
  const relayApi = new RelayApi(
    transport,
    { publicKey: async () => new Uint8Array(32), sign: async () => new Uint8Array(64) },
    () => nowMs,
    ALICE,
  );
  return {
    relayApi,
    sends: () => http.filter((line) => line.startsWith('PUT /v1/messages/')),
    advance: (ms: number) => (nowMs += ms),
  };
};

describe('sends over the message socket', () => {
  it('go over the open socket with the recipient in the body, and over HTTP once it is cleared', async () => {
    const { relayApi, sends } = api();
    const overSocket: SocketSendRequest[] = [];
    relayApi.useSocket(async (body) => {
      overSocket.push(body);
      return { status: 409, body: { error: { code: 'MISMATCHED_DEVICES' } } };
    });
    // The socket's answer is the route's answer, whatever its status.
    expect(await relayApi.sendMessages(BOB, request)).toEqual({
      status: 409,
      body: { error: { code: 'MISMATCHED_DEVICES' } },
    });
    expect(overSocket).toEqual([{ accountId: BOB, ...request }]);
    expect(sends()).toEqual([]);
    relayApi.useSocket(undefined);
    expect((await relayApi.sendMessages(BOB, request)).status).toBe(200);
    expect(sends()).toEqual([`PUT /v1/messages/${BOB}`]);
    expect(overSocket).toHaveLength(1);
  });

  it('go over HTTP from then on when the relay does not know the verb (a relay older than socket sends)', async () => {
    const { relayApi, sends } = api();
    let overSocket = 0;
    relayApi.useSocket(async () => {
      overSocket += 1;
      return { status: 404, body: { error: { code: 'NOT_FOUND', message: 'unknown verb' } } };
    });
    expect((await relayApi.sendMessages(BOB, request)).status).toBe(200);
    expect((await relayApi.sendMessages(BOB, request)).status).toBe(200);
    expect(overSocket).toBe(1);
    expect(sends()).toEqual([`PUT /v1/messages/${BOB}`, `PUT /v1/messages/${BOB}`]);
    // An unknown recipient is the route's own 404: the answer as it is.
    relayApi.useSocket(async () => ({
      status: 404,
      body: { error: { code: 'ACCOUNT_NOT_FOUND', message: 'No such account.' } },
    }));
    expect((await relayApi.sendMessages(BOB, request)).status).toBe(404);
    expect(sends()).toHaveLength(2);
  });

  it('stay under the relay’s frame rate: past 100 in a second the rest go over HTTP until tokens come back', async () => {
    const { relayApi, sends, advance } = api();
    let overSocket = 0;
    relayApi.useSocket(async () => {
      overSocket += 1;
      return { status: 200, body: { stored: 1 } };
    });
    for (let i = 0; i < 110; i += 1) await relayApi.sendMessages(BOB, request);
    expect(overSocket).toBe(100);
    expect(sends()).toHaveLength(10);
    advance(50); // 5 tokens back, at 100 a second
    for (let i = 0; i < 6; i += 1) await relayApi.sendMessages(BOB, request);
    expect(overSocket).toBe(105);
    expect(sends()).toHaveLength(11);
  });

  it('keep at most 32 awaiting their answers on the socket; the 33rd goes over HTTP', async () => {
    const { relayApi, sends } = api();
    const answers: ((answer: HttpResponse) => void)[] = [];
    relayApi.useSocket(() => new Promise((resolve) => answers.push(resolve)));
    const waiting = Array.from({ length: 33 }, () => relayApi.sendMessages(BOB, request));
    expect((await waiting[32])?.status).toBe(200);
    expect(answers).toHaveLength(32);
    expect(sends()).toHaveLength(1);
    for (const answer of answers) answer({ status: 200, body: { stored: 1 } });
    await Promise.all(waiting);
    // Answered, they make room again.
    void relayApi.sendMessages(BOB, request);
    expect(answers).toHaveLength(33);
  });

  it('a socket that closes before the answer rejects with RELAY_UNREACHABLE, for the sender to retry', async () => {
    const { relayApi } = api();
    let tried = 0;
    relayApi.useSocket(async () => {
      tried += 1;
      throw new ClientError('RELAY_UNREACHABLE', 'the socket closed before the relay answered');
    });
    await expect(relayApi.sendMessages(BOB, request)).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    // Its place in flight is given back: the next send tries the socket again.
    await expect(relayApi.sendMessages(BOB, request)).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
    expect(tried).toBe(2);
  });
});
