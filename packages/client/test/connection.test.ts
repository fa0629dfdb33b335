import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, type Envelope } from '@privcomm/wire';
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

/** Opens a connection over a fake socket, answering the auth request with `authStatus`. */
const open = async (
  onEnvelope: (envelope: Envelope) => Promise<number> = async () => 200,
  authStatus = 200,
) => {
  const socket = new FakeSocket();
  const transport: Transport = {
    relayUrl: 'http://relay.test',
    fetch: () => Promise.reject(new Error('no HTTP here')),
    openSocket: () => socket,
  };
  const logger = new CapturingLogger();
  const seen: string[] = [];
  const closes: number[] = [];
  let idle = 0;
  const opening = RelayConnection.open(
    transport,
    'token',
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
  socket.receive(JSON.stringify({ type: 'response', id: auth.id, status: authStatus }));
  return { opening, socket, logger, seen, closes, idle: () => idle };
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
