import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket } from './support/client.ts';
import { cutListeners, storeElsewhere } from './support/listener.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  // A short ack deadline so the slow-consumer test is quick, long enough that a busy machine does
  // not cut off the sockets of the other tests while they hold an envelope unanswered on purpose.
  relay = await startRelay(database.url, { WS_ACK_TIMEOUT_MS: '4000', WS_WINDOW: '4' });
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const countQueued = (device: TestDevice) =>
  relay.relay.context.envelopes.countFor(device.accountId, device.deviceId);

describe('sending', () => {
  it('stores envelopes durably before answering 200, and delivers them in order', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const hourOf = (ms: number): string => new Date(ms - (ms % 3_600_000)).toISOString();
    const hourBefore = hourOf(Date.now());
    for (const text of ['one', 'two', 'three']) {
      const sent = await alice.send(bob.accountId, [bob.address()], text);
      expect(sent.status).toBe(200);
      expect(sent.body).toEqual({ stored: 1 });
    }
    expect(await countQueued(bob)).toBe(3);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(
      () => socket.requests.some((r) => r.verb === 'queue.empty'),
      5_000,
      'queue.empty',
    );
    expect(socket.texts()).toEqual(['one', 'two', 'three']);
    const envelope = socket.envelopes()[0];
    expect(envelope).toMatchObject({ type: 1, urgent: false, online: false });
    // The hour the rows were stored in (the run may cross into the next one).
    expect([hourBefore, hourOf(Date.now())]).toContain(envelope?.storedHour);
    await expect.poll(() => countQueued(bob)).toBe(0);
    await socket.close();
  });

  it('answers 409 with missing and extra devices, and stores nothing', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const bob2 = await TestDevice.link(bob);
    const missing = await alice.send(bob.accountId, [bob.address()], 'x');
    expect(missing.status).toBe(409);
    expect(missing.body).toMatchObject({
      error: { code: 'MISMATCHED_DEVICES' },
      missingDevices: [bob2.deviceId],
      extraDevices: [],
    });
    const extra = await alice.send(
      bob.accountId,
      [bob.address(), bob2.address(), { deviceId: 9, registrationId: 1 }],
      'x',
    );
    expect(extra.status).toBe(409);
    expect(extra.body).toMatchObject({ missingDevices: [], extraDevices: [9] });
    expect(await countQueued(bob)).toBe(0);
    expect(await countQueued(bob2)).toBe(0);
  });

  it('answers 410 for a stale registration id before any 409, and stores nothing', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await TestDevice.link(bob);
    const stale = await alice.send(
      bob.accountId,
      [{ deviceId: 1, registrationId: (bob.registrationId % 16380) + 1 }],
      'x',
    );
    expect(stale.status).toBe(410);
    expect(stale.body).toMatchObject({ error: { code: 'STALE_DEVICES' }, staleDevices: [1] });
    expect(await countQueued(bob)).toBe(0);
  });

  it('sends to one’s own other devices, never back to the sender', async () => {
    const alice = await TestDevice.register(relay.url);
    const alice2 = await TestDevice.link(alice);
    const toSelf = await alice.send(alice.accountId, [alice.address(), alice2.address()], 'sync');
    expect(toSelf.status).toBe(409);
    expect(toSelf.body).toMatchObject({ extraDevices: [1] });
    expect((await alice.send(alice.accountId, [alice2.address()], 'sync')).status).toBe(200);
    expect(await countQueued(alice2)).toBe(1);
  });

  it('refuses a ciphertext over 96 KiB with 413 and accepts one at the limit', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const over = await alice.send(bob.accountId, [bob.address()], Buffer.alloc(96 * 1024 + 1));
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe('CONTENT_TOO_LARGE');
    const at = await alice.send(bob.accountId, [bob.address()], Buffer.alloc(96 * 1024));
    expect(at.status).toBe(200);
  });

  it('answers 404 for an unknown recipient', async () => {
    const alice = await TestDevice.register(relay.url);
    const result = await alice.send(
      '00000000-0000-4000-8000-000000000000',
      [{ deviceId: 1, registrationId: 1 }],
      'x',
    );
    expect(result.status).toBe(404);
    expect(result.body.error.code).toBe('ACCOUNT_NOT_FOUND');
  });
});

describe('sending over the socket (message.send)', () => {
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  const sendOver = (socket: TestSocket, recipient: TestDevice, text: string, extra = {}) =>
    socket.request('message.send', {
      accountId: recipient.accountId,
      messages: [{ ...recipient.address(), type: 1, content: b64(text) }],
      ...extra,
    });

  it('answers 200 only once the envelope is stored, and the recipient receives it', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, alice);
    const sent = await sendOver(socket, bob, 'over the socket');
    expect(sent).toMatchObject({ status: 200, body: { stored: 1 } });
    expect(await countQueued(bob)).toBe(1);
    const inbox = await TestSocket.connect(relay.wsUrl, bob);
    await inbox.until(() => inbox.texts().length === 1);
    expect(inbox.texts()).toEqual(['over the socket']);
    await Promise.all([socket.close(), inbox.close()]);
  });

  it('answers errors with the HTTP route’s status and body, and stores nothing', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const bob2 = await TestDevice.link(bob);
    const socket = await TestSocket.connect(relay.wsUrl, alice);
    const mismatched = await sendOver(socket, bob, 'x');
    expect(mismatched).toMatchObject({
      status: 409,
      body: { error: { code: 'MISMATCHED_DEVICES' }, missingDevices: [bob2.deviceId] },
    });
    const tooBig = await socket.request('message.send', {
      accountId: bob.accountId,
      messages: [bob.address(), bob2.address()].map((device) => ({
        ...device,
        type: 1,
        content: Buffer.alloc(4097).toString('base64'),
      })),
      online: true,
    });
    expect(tooBig).toMatchObject({ status: 413, body: { error: { code: 'CONTENT_TOO_LARGE' } } });
    const noRecipient = await socket.request('message.send', {
      messages: [{ ...bob.address(), type: 1, content: b64('x') }],
    });
    expect(noRecipient).toMatchObject({
      status: 400,
      body: { error: { code: 'VALIDATION_FAILED' } },
    });
    const unknown = await socket.request('message.send', {
      accountId: '00000000-0000-4000-8000-000000000000',
      messages: [{ ...bob.address(), type: 1, content: b64('x') }],
    });
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'ACCOUNT_NOT_FOUND' } } });
    expect(await countQueued(bob)).toBe(0);
    expect(await countQueued(bob2)).toBe(0);
    await socket.close();
  });

  it('refuses a send from a device removed after its socket authenticated', async () => {
    const alice = await TestDevice.register(relay.url);
    const alice2 = await TestDevice.link(alice);
    const bob = await TestDevice.register(relay.url);
    const removed = await alice.request('DELETE', `/v1/devices/${alice2.deviceId}`);
    expect(removed.status).toBe(204);
    // The socket of a removed device closes at once; a send already on its way meets the same
    // check inside the sender, which this calls directly.
    const sender = { accountId: alice2.accountId, deviceId: alice2.deviceId } as never;
    await expect(
      relay.relay.context.sender.send(sender, bob.accountId as never, {
        messages: [{ ...bob.address(), type: 1, content: b64('x') }],
      }),
    ).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(await countQueued(bob)).toBe(0);
  });
});

describe('delivery', () => {
  it('redelivers unacknowledged envelopes after the socket drops, and deletes only acknowledged ones', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await alice.send(bob.accountId, [bob.address()], 'first');
    await alice.send(bob.accountId, [bob.address()], 'second');
    const silent = await TestSocket.connect(relay.wsUrl, bob, null);
    await silent.until(() => silent.envelopes().length === 2, 5_000, 'two envelopes');
    const [first] = silent.requests.filter((r) => r.verb === 'envelope');
    silent.respond(first!.id, 200);
    await expect.poll(() => countQueued(bob)).toBe(1);
    silent.ws.terminate();
    await silent.closed;

    const again = await TestSocket.connect(relay.wsUrl, bob);
    await again.until(() => again.envelopes().length === 1, 5_000, 'redelivery');
    expect(again.texts()).toEqual(['second']);
    expect(again.envelopes()[0]?.id).toBe(silent.envelopes()[1]?.id);
    await expect.poll(() => countQueued(bob)).toBe(0);
    await again.close();
  });

  it('keeps an envelope answered with an error status, for the next connection', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await alice.send(bob.accountId, [bob.address()], 'retry me');
    const refusing = await TestSocket.connect(relay.wsUrl, bob, 500);
    await refusing.until(() => refusing.envelopes().length === 1);
    await refusing.close();
    expect(await countQueued(bob)).toBe(1);
    const accepting = await TestSocket.connect(relay.wsUrl, bob);
    await accepting.until(() => accepting.envelopes().length === 1);
    await expect.poll(() => countQueued(bob)).toBe(0);
    await accepting.close();
  });

  it('pushes envelopes that arrive while connected, and sends queue.empty once', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'));
    for (let i = 0; i < 10; i += 1) await alice.send(bob.accountId, [bob.address()], `live ${i}`);
    await socket.until(() => socket.envelopes().length === 10, 5_000, 'ten live envelopes');
    expect(socket.texts()).toEqual(Array.from({ length: 10 }, (_, i) => `live ${i}`));
    expect(socket.requests.filter((r) => r.verb === 'queue.empty')).toHaveLength(1);
    await socket.close();
  });

  it('delivers what arrives while connected in order and exactly once, past a full window', async () => {
    // This file's window is 4, and the recipient answers only every tenth send: the window
    // overflows, so envelopes are both handed over at once and read back from the queue.
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const sender = await TestSocket.connect(relay.wsUrl, alice);
    const inbox = await TestSocket.connect(relay.wsUrl, bob, null);
    await inbox.until(() => inbox.requests.some((r) => r.verb === 'queue.empty'));
    const answered = new Set<number>();
    const answerAll = (): void => {
      for (const request of inbox.requests) {
        if (request.verb !== 'envelope' || answered.has(request.id)) continue;
        answered.add(request.id);
        inbox.respond(request.id, 200);
      }
    };
    const texts = Array.from({ length: 40 }, (_, i) => `m${i}`);
    for (const [index, text] of texts.entries()) {
      const sent = await sender.request('message.send', {
        accountId: bob.accountId,
        messages: [{ ...bob.address(), type: 1, content: Buffer.from(text).toString('base64') }],
      });
      expect(sent.status).toBe(200);
      if (index % 10 === 9) answerAll();
    }
    await inbox.until(
      () => {
        answerAll();
        return inbox.texts().length >= texts.length;
      },
      10_000,
      'all envelopes',
    );
    expect(inbox.texts()).toEqual(texts);
    await expect.poll(() => countQueued(bob)).toBe(0);
    await Promise.all([sender.close(), inbox.close()]);
  });

  it('a second socket for the same device replaces the first with 4409', async () => {
    const bob = await TestDevice.register(relay.url);
    const first = await TestSocket.connect(relay.wsUrl, bob);
    const second = await TestSocket.connect(relay.wsUrl, bob);
    expect(await first.closed).toBe(CLOSE_CODES.CONNECTED_ELSEWHERE);
    const alice = await TestDevice.register(relay.url);
    await alice.send(bob.accountId, [bob.address()], 'to the newest');
    await second.until(() => second.envelopes().length === 1);
    await second.close();
  });

  it('online messages reach a connected device and are never stored', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const offline = await alice.send(bob.accountId, [bob.address()], 'typing', { online: true });
    expect(offline.status).toBe(200);
    expect(offline.body).toEqual({ stored: 0 });
    expect(await countQueued(bob)).toBe(0);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'));
    expect(socket.envelopes()).toHaveLength(0);
    await alice.send(bob.accountId, [bob.address()], 'typing now', { online: true, urgent: true });
    await socket.until(() => socket.envelopes().length === 1);
    expect(socket.envelopes()[0]).toMatchObject({ online: true, urgent: true });
    expect(socket.texts()).toEqual(['typing now']);
    expect(await countQueued(bob)).toBe(0);
    const tooBig = await alice.send(bob.accountId, [bob.address()], Buffer.alloc(4097), {
      online: true,
    });
    expect(tooBig.status).toBe(413);
    await socket.close();
  });

  it('closes a consumer that never acknowledges with 4429 and keeps its envelopes', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    for (let i = 0; i < 10; i += 1) await alice.send(bob.accountId, [bob.address()], `m${i}`);
    const slow = await TestSocket.connect(relay.wsUrl, bob, null);
    // The window (4 here) bounds what is in flight: the relay reads no more than that.
    await slow.until(() => slow.envelopes().length === 4);
    expect(await slow.closed).toBe(CLOSE_CODES.SLOW_CONSUMER);
    expect(slow.envelopes()).toHaveLength(4);
    expect(await countQueued(bob)).toBe(10);
  });

  it('the janitor removes expired envelopes', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    await alice.send(bob.accountId, [bob.address()], 'old');
    await alice.send(bob.accountId, [bob.address()], 'new');
    await relay.relay.context.database.pool.query(
      `UPDATE envelopes SET expires_at = now() - interval '1 second'
       WHERE seq = (SELECT min(seq) FROM envelopes WHERE account_id = $1)`,
      [bob.accountId],
    );
    expect(await relay.relay.runJanitor()).toBeGreaterThanOrEqual(1);
    expect(await countQueued(bob)).toBe(1);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'));
    expect(socket.texts()).toEqual(['new']);
    await socket.close();
  });

  it('catches up after the event listener loses its database connection', async () => {
    const bob = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'));
    await cutListeners(relay);
    // Stored while nobody listens, as another instance stores it (this instance's sender would
    // hand it to the socket itself): only the resync after reconnecting can deliver it.
    await storeElsewhere(relay, bob, 'during the outage');
    await socket.until(() => socket.envelopes().length === 1, 10_000, 'delivery after resync');
    expect(socket.texts()).toEqual(['during the outage']);
    expect(relay.relay.context.listener.listening).toBe(true);
    await socket.close();
  });
});
