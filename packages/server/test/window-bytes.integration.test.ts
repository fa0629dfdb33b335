import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * The window's byte bound on the real path (the queue read in PostgreSQL, the socket's count of
 * what is in flight): with 5,000 bytes of room, envelopes of 3,000 bytes go two at a time, though
 * the window's count (128) would let all five go.
 */
const WINDOW_BYTES = 5_000;
const CONTENT_BYTES = 3_000;

let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url, { WS_WINDOW_BYTES: String(WINDOW_BYTES) });
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

describe('the window in bytes', () => {
  it('keeps no more than its bytes of stored envelopes in flight, then the rest as answers come', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    for (let i = 0; i < 5; i += 1) {
      const content = Buffer.alloc(CONTENT_BYTES, 48 + i);
      expect((await alice.send(bob.accountId, [bob.address()], content)).status).toBe(200);
    }
    const socket = await TestSocket.connect(relay.wsUrl, bob, null);
    const answered = new Set<number>();
    const answerAll = (): void => {
      for (const request of socket.requests.filter((r) => r.verb === 'envelope')) {
        if (!answered.has(request.id)) socket.respond(request.id, 200);
        answered.add(request.id);
      }
    };
    // 0 and 3,000 bytes before the first two, 6,000 before the third: two.
    await socket.until(() => socket.envelopes().length >= 2, 5_000, 'the first two');
    await sleep(500); // room for a third to arrive if the bytes did not hold it back
    expect(socket.envelopes()).toHaveLength(2);
    expect(socket.requests.some((r) => r.verb === 'queue.empty')).toBe(false);

    answerAll();
    await socket.until(() => socket.envelopes().length >= 4, 5_000, 'the next two');
    await sleep(500);
    expect(socket.envelopes()).toHaveLength(4);

    answerAll();
    await socket.until(
      () => socket.requests.some((r) => r.verb === 'queue.empty'),
      5_000,
      'queue.empty',
    );
    expect(socket.texts().map((text) => text[0])).toEqual(['0', '1', '2', '3', '4']);
    expect(
      socket.envelopes().every((e) => Buffer.from(e.content, 'base64').length === CONTENT_BYTES),
    ).toBe(true);
    await socket.close();
  });
});
