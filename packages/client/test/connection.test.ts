import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, joinBinaryFrame, type Envelope } from '@privcomm/wire';
import { fromBase64, toBase64 } from '../src/bytes.ts';
import { RelayConnection } from '../src/connection.ts';
import type { Transport } from '../src/transport.ts';
import { CapturingLogger, FakeSocket, settle } from './support/fakes.ts';

const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const envelope = (n: number): Envelope => ({
  id: id(n),
  type: 6,
  content: 'AAAA',
  urgent: false,
  online: false,
});

/** A transport whose one socket is `socket`, recording the URLs it is opened with; no HTTP. */
const socketTransport = (socket: FakeSocket, urls: string[], binary: boolean): Transport => ({
  relayUrl: 'http://relay.test',
  fetch: () => Promise.reject(new Error('no HTTP here')),
  openSocket: (url) => {
    urls.push(url);
    return socket;
  },
  ...(binary ? { binaryFrames: { encode: toBase64, decode: fromBase64 } } : {}),
});

/**
 * Opens a connection over a fake socket, answering the auth request with `authStatus` (and
 * `authBody`). With `binary`, the transport asks for binary frames (with the core's own base64).
 */
const open = async (
  onEnvelope: (envelope: Envelope) => Promise<number> = async () => 200,
  authStatus = 200,
  { binary = false, authBody }: { binary?: boolean; authBody?: unknown } = {},
) => {
  const socket = new FakeSocket();
  const urls: string[] = [];
  const transport = socketTransport(socket, urls, binary);
  const logger = new CapturingLogger();
  const seen: string[] = [];
  const closes: number[] = [];
  let idle = 0;
  const opening = RelayConnection.open(
    transport,
    { token: 'token' },
    {
      onEnvelope: async (e) => {
        seen.push(e.id);
        return onEnvelope(e);
      },
      onQueueEmpty: () => seen.push('queue-empty'),
      onIdle: () => (idle += 1),
      onClose: (code) => closes.push(code),
    },
    logger,
  );
  socket.onopen?.({});
  const auth = socket.sent[0] as { id: number; verb: string };
  expect(auth.verb).toBe('auth');
  socket.receive(
    JSON.stringify({ type: 'response', id: auth.id, status: authStatus, body: authBody }),
  );
  return { opening, socket, logger, seen, closes, urls, idle: () => idle };
};

describe('relay connection', () => {
  it('skips garbage frames with a logged reason and handles every envelope around them, in order', async () => {
    const { opening, socket, logger, seen } = await open();
    await opening;
    socket.request(1, 'envelope', envelope(1));
    socket.receive('not json {');
    socket.receive(new Uint8Array([1, 2, 3]));
    socket.receive(JSON.stringify({ type: 'request', id: -1, verb: 'envelope' }));
    socket.receive(JSON.stringify({ hello: 'world' }));
    socket.receive('x'.repeat(300 * 1024));
    socket.receive(JSON.stringify({ type: 'error', code: 'MALFORMED_JSON', message: 'm' }));
    socket.request(2, 'envelope', envelope(2));
    socket.request(3, 'queue.empty');
    await settle();
    expect(seen).toEqual([id(1), id(2), 'queue-empty']);
    expect(socket.responses()).toEqual([
      { type: 'response', id: 1, status: 200 },
      { type: 'response', id: 2, status: 200 },
      { type: 'response', id: 3, status: 200 },
    ]);
    expect(logger.lines.map((l) => l.reason ?? l.event)).toEqual([
      'frame is not JSON',
      'frame is not text',
      'frame does not match the protocol',
      'frame does not match the protocol',
      'frame too large',
      'the relay could not read a frame',
    ]);
    expect(socket.closedWith).toBeUndefined();
  });

  it('acknowledges a malformed envelope (kept, it would come back forever) and goes on', async () => {
    const { opening, socket, logger, seen } = await open();
    await opening;
    socket.request(1, 'envelope', { id: 'nope', content: 5 });
    socket.request(2, 'envelope', envelope(2));
    await settle();
    expect(seen).toEqual([id(2)]);
    expect(socket.responses().map((r) => [r.id, r.status])).toEqual([
      [1, 200],
      [2, 200],
    ]);
    expect(logger.lines).toContainEqual({
      level: 'warn',
      event: 'envelope dropped',
      reason: 'malformed envelope',
    });
  });

  it('answers 500 to an envelope whose handling failed, which stays queued, and handles the next', async () => {
    const { opening, socket, seen } = await open(async (e) => {
      if (e.id === id(1)) throw new Error('disk full');
      return 200;
    });
    await opening;
    socket.request(1, 'envelope', envelope(1));
    socket.request(2, 'envelope', envelope(2));
    await settle();
    expect(seen).toEqual([id(1), id(2)]);
    expect(socket.responses().map((r) => [r.id, r.status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
  });

  it('reports idleness once everything received is answered', async () => {
    const { opening, socket, idle } = await open();
    await opening;
    socket.request(1, 'envelope', envelope(1));
    socket.request(2, 'envelope', envelope(2));
    await settle();
    expect(idle()).toBe(1);
  });

  it('refuses a socket the relay does not authenticate, with a stable code', async () => {
    const { opening } = await open(undefined, 401);
    await expect(opening).rejects.toMatchObject({
      code: 'RELAY_REFUSED',
      relayCode: 'UNAUTHENTICATED',
    });
  });

  it('reports a close by the relay, and then answers nothing', async () => {
    const { opening, socket, closes } = await open();
    const connection = await opening;
    socket.drop(CLOSE_CODES.GOING_AWAY, 'restart');
    expect(closes).toEqual([CLOSE_CODES.GOING_AWAY]);
    await expect(connection.request('ping')).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
  });
});

describe('requests answered like HTTP (message.send)', () => {
  it('resolve with the response’s status and body', async () => {
    const { opening, socket } = await open();
    const connection = await opening;
    const answer = connection.call('message.send', { accountId: 'x', messages: [] });
    const sent = socket.sent.at(-1) as { id: number; verb: string; body: unknown };
    expect(sent).toMatchObject({ type: 'request', verb: 'message.send' });
    socket.receive(JSON.stringify({ type: 'response', id: sent.id, status: 409, body: { n: 1 } }));
    await expect(answer).resolves.toEqual({ status: 409, body: { n: 1 } });
  });

  it('reject with RELAY_UNREACHABLE when the socket closes before the answer', async () => {
    const { opening, socket } = await open();
    const connection = await opening;
    const answer = connection.call('message.send', {});
    socket.drop(1006);
    await expect(answer).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(connection.isClosed).toBe(true);
    await expect(connection.call('message.send', {})).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
    });
  });
});

describe('binary frames', () => {
  const ACCOUNT = id(9);
  const sendBody = {
    accountId: ACCOUNT,
    messages: [
      { deviceId: 1, registrationId: 5, type: 1, content: toBase64(new Uint8Array([1, 2, 3])) },
      { deviceId: 2, registrationId: 6, type: 3, content: toBase64(new Uint8Array(300).fill(7)) },
    ],
    urgent: true,
  };
  const binaryEnvelope = (requestId: number, n: number, content: Uint8Array): Uint8Array =>
    joinBinaryFrame(
      JSON.stringify({
        type: 'request',
        id: requestId,
        verb: 'envelope',
        body: { ...envelope(n), content: content.length },
      }),
      [content],
    );

  it('are asked for, and sends go as bytes once the relay says it takes them', async () => {
    const { opening, socket, urls } = await open(undefined, 200, {
      binary: true,
      authBody: { accountId: ACCOUNT, deviceId: 1, frames: 'binary' },
    });
    const connection = await opening;
    expect(urls).toEqual(['ws://relay.test/v1/websocket?frames=binary']);
    expect(socket.binaryType).toBe('arraybuffer');
    const answer = connection.call('message.send', sendBody);
    const sent = socket.sent.at(-1) as { id: number; binary: boolean; body: any; tail: Uint8Array };
    expect(sent).toMatchObject({ binary: true, type: 'request', verb: 'message.send' });
    expect(sent.body).toEqual({
      ...sendBody,
      messages: sendBody.messages.map((m, i) => ({ ...m, content: [3, 300][i] })),
    });
    expect([...sent.tail]).toEqual([1, 2, 3, ...new Array(300).fill(7)]);
    socket.receive(JSON.stringify({ type: 'response', id: sent.id, status: 200, body: {} }));
    await expect(answer).resolves.toEqual({ status: 200, body: {} });
    // Everything else stays JSON text.
    expect(socket.sent.filter((frame) => frame.binary)).toHaveLength(1);
  });

  it('are not sent to a relay whose answer to auth does not say it takes them', async () => {
    const { opening, socket } = await open(undefined, 200, {
      binary: true,
      authBody: { accountId: ACCOUNT, deviceId: 1 },
    });
    const connection = await opening;
    void connection.call('message.send', sendBody);
    expect(socket.sent.at(-1)).toMatchObject({ verb: 'message.send', body: sendBody });
    expect(socket.sent.some((frame) => frame.binary)).toBe(false);
  });

  it('bring envelopes whose content is bytes, handed on in base64; malformed ones are skipped', async () => {
    const contents: string[] = [];
    const { opening, socket, logger, seen } = await open(
      async (e) => {
        contents.push(e.content);
        return 200;
      },
      200,
      { binary: true, authBody: { frames: 'binary' } },
    );
    await opening;
    const bytes = new Uint8Array([250, 0, 9, 8]);
    socket.receive(binaryEnvelope(4, 1, bytes).buffer); // an ArrayBuffer, as browsers give
    const good = binaryEnvelope(5, 2, new Uint8Array(0));
    socket.receive(good); // a Uint8Array, as Node's ws gives (a Buffer)
    const wrongLength = binaryEnvelope(6, 3, bytes).slice(0, -1);
    socket.receive(wrongLength);
    socket.receive(new Uint8Array([0, 9, 1]));
    socket.receive(
      joinBinaryFrame(JSON.stringify({ type: 'request', id: 7, verb: 'queue.empty' }), []),
    );
    socket.request(8, 'envelope', envelope(4)); // JSON envelopes still come too
    await settle();
    expect(seen).toEqual([id(1), id(2), id(4)]);
    expect(contents).toEqual([toBase64(bytes), '', 'AAAA']);
    expect(socket.responses().map((r) => r.id)).toEqual([4, 5, 8]);
    expect(logger.reasons()).toEqual([
      'envelope content does not match its length',
      'malformed binary frame',
      'binary frame is not an envelope',
    ]);
  });

  it('are refused when not asked for', async () => {
    const { opening, socket, logger, seen } = await open();
    await opening;
    socket.receive(binaryEnvelope(4, 1, new Uint8Array([1])));
    await settle();
    expect(seen).toEqual([]);
    expect(logger.reasons()).toEqual(['frame is not text']);
  });
});

describe('login on the socket (by signature)', () => {
  const ACCOUNT = id(7);
  const nonce = new Uint8Array(32).fill(9);

  /** Opens a connection that logs in by signature; the signer records the nonces it signed. */
  const openSigning = (sign?: (nonce: Uint8Array) => Promise<string>) => {
    const socket = new FakeSocket();
    const urls: string[] = [];
    const signed: Uint8Array[] = [];
    const tokens: unknown[] = [];
    const closes: number[] = [];
    const opening = RelayConnection.open(
      socketTransport(socket, urls, true),
      {
        sign: async (challenge) => {
          signed.push(challenge);
          return {
            accountId: ACCOUNT,
            deviceId: 2,
            signature: await (sign ?? (async () => 'S'.repeat(88)))(challenge),
          };
        },
        onToken: (answer) => tokens.push(answer),
      },
      {
        onEnvelope: async () => 200,
        onQueueEmpty: () => undefined,
        onClose: (code) => closes.push(code),
      },
      new CapturingLogger(),
    );
    socket.onopen?.({});
    return { opening, socket, urls, signed, tokens, closes };
  };

  it('asks for it, waits for the challenge, signs its nonce, and hands on the token it answers', async () => {
    const { opening, socket, urls, signed, tokens } = openSigning();
    expect(urls).toEqual(['ws://relay.test/v1/websocket?frames=binary&login=signature']);
    await settle();
    expect(socket.sent).toEqual([]); // nothing before the challenge
    socket.request(1, 'auth.challenge', { nonce: toBase64(nonce) });
    await settle();
    expect(signed).toEqual([nonce]);
    expect(socket.sent).toEqual([
      {
        type: 'request',
        id: 1,
        verb: 'auth',
        body: { accountId: ACCOUNT, deviceId: 2, signature: 'S'.repeat(88) },
      },
    ]);
    const answer = {
      accountId: ACCOUNT,
      deviceId: 2,
      token: 'fresh-token',
      expiresAt: '2026-12-07T01:05:00.000Z',
      frames: 'binary',
    };
    socket.receive(JSON.stringify({ type: 'response', id: 1, status: 200, body: answer }));
    const connection = await opening;
    expect(tokens).toEqual([answer]);
    // The challenge is not answered (the answer is auth); a second one is ignored.
    socket.request(2, 'auth.challenge', { nonce: toBase64(nonce) });
    await settle();
    expect(signed).toHaveLength(1);
    expect(socket.responses()).toEqual([]);
    expect(connection.isClosed).toBe(false);
  });

  it('takes no answer without a token as a relay’s, and ignores a malformed challenge', async () => {
    const { opening, socket, signed, tokens } = openSigning();
    socket.request(1, 'auth.challenge', { nonce: 'short' });
    await settle();
    expect(signed).toEqual([]);
    expect(socket.sent).toEqual([]);
    socket.drop(CLOSE_CODES.TIMEOUT, 'authentication timeout');
    // Challenged (if badly): a relay that has the login and timed out, not one without it.
    await expect(opening).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    await expect(opening).rejects.not.toMatchObject({ relayCode: 'NO_SOCKET_LOGIN' });

    const second = openSigning();
    second.socket.request(1, 'auth.challenge', { nonce: toBase64(nonce) });
    await settle();
    second.socket.receive(
      JSON.stringify({
        type: 'response',
        id: 1,
        status: 200,
        body: { accountId: ACCOUNT, deviceId: 2 },
      }),
    );
    await expect(second.opening).rejects.toMatchObject({ code: 'NOT_A_RELAY' });
    expect(second.socket.closedWith?.code).toBe(CLOSE_CODES.NORMAL);
    expect(tokens).toEqual([]);
  });

  it('says NO_SOCKET_LOGIN when a relay without it times the socket out unchallenged, and reports no connection', async () => {
    const { opening, socket, closes } = openSigning();
    socket.drop(CLOSE_CODES.TIMEOUT, 'authentication timeout');
    await expect(opening).rejects.toMatchObject({
      code: 'RELAY_UNREACHABLE',
      relayCode: 'NO_SOCKET_LOGIN',
    });
    expect(closes).toEqual([]);
  });

  it('closes the socket and rejects with the signer’s error when signing fails', async () => {
    const { opening, socket } = openSigning(async () => {
      throw new Error('key store locked');
    });
    socket.request(1, 'auth.challenge', { nonce: toBase64(nonce) });
    await expect(opening).rejects.toThrow('key store locked');
    expect(socket.closedWith?.code).toBe(CLOSE_CODES.NORMAL);
    expect(socket.sent).toEqual([]);
  });
});
