import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinBinaryFrame } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import WebSocket from 'ws';
import { http, TestDevice, TestSocket } from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/** Binary frames (docs/protocol.md, "Binary frames"), against a real relay and PostgreSQL. */

let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const countQueued = (device: TestDevice) =>
  relay.relay.context.envelopes.countFor(device.accountId, device.deviceId);

/** A binary `message.send` of `contents`, one per device of `recipient`, in their order. */
const sendBinary = (
  socket: TestSocket,
  recipient: TestDevice,
  devices: { deviceId: number; registrationId: number }[],
  contents: Buffer[],
  extra: object = {},
) =>
  socket.request(
    'message.send',
    {
      accountId: recipient.accountId,
      messages: devices.map((device, index) => ({
        ...device,
        type: 1,
        content: contents[index]?.length,
      })),
      ...extra,
    },
    contents,
  );

/** The relay's error frames on this socket. */
const errorFrames = (socket: TestSocket) => socket.frames.filter((frame) => frame.type === 'error');

describe('binary frames', () => {
  it('are taken only when asked for, and said so in the answer to auth', async () => {
    const alice = await TestDevice.register(relay.url);
    const json = await TestSocket.connect(relay.wsUrl, alice);
    expect(json.authAnswer).toEqual({ accountId: alice.accountId, deviceId: alice.deviceId });
    await json.close();
    const binary = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
    expect(binary.authAnswer).toEqual({
      accountId: alice.accountId,
      deviceId: alice.deviceId,
      frames: 'binary',
    });
    await binary.close();
  });

  it('refuse any other frames= value (or other query parameter) before the upgrade, with 400', async () => {
    for (const query of ['frames=json', 'frames=BINARY', 'frames=binary&x=1', 'x=1']) {
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${relay.wsUrl}?${query}`);
        ws.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
        ws.once('open', () => reject(new Error(`${query} was upgraded`)));
        ws.once('error', () => undefined);
      });
      expect(status, query).toBe(400);
    }
    const answer = await http(relay.url, 'GET', '/v1/websocket?frames=json');
    expect(answer.body.error.code).toBe('VALIDATION_FAILED');
  });

  it('carry a send’s contents as bytes, stored and delivered exactly, to either kind of socket', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const bobLaptop = await TestDevice.link(bob);
    const sender = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
    // Different sizes, so that a content cut at the wrong place cannot pass for another.
    const contents = [randomBytes(1), randomBytes(1500)];
    const sent = await sendBinary(sender, bob, [bob.address(), bobLaptop.address()], contents);
    expect(sent).toMatchObject({ status: 200, body: { stored: 2 } });
    expect(await countQueued(bob)).toBe(1);
    expect(await countQueued(bobLaptop)).toBe(1);

    // Stored, then read from the queue: a binary socket gets bytes, a JSON socket base64.
    const phone = await TestSocket.connect(relay.wsUrl, bob, 200, { binary: true });
    const laptop = await TestSocket.connect(relay.wsUrl, bobLaptop);
    await phone.until(() => phone.envelopes().length === 1, 5_000, 'the phone’s envelope');
    await laptop.until(() => laptop.envelopes().length === 1, 5_000, 'the laptop’s envelope');
    const fromQueue = phone.requests.find((frame) => frame.verb === 'envelope') as any;
    expect(fromQueue.binary).toBe(true);
    expect(Buffer.from(phone.envelopes()[0]?.content ?? '', 'base64')).toEqual(contents[0]);
    expect(laptop.frames.some((frame) => frame.binary)).toBe(false);
    expect(Buffer.from(laptop.envelopes()[0]?.content ?? '', 'base64')).toEqual(contents[1]);

    // Delivered while connected (first, or handed over after the commit) the same way, and a
    // JSON send reaches a binary socket as bytes.
    const more = [randomBytes(700), randomBytes(3)];
    expect(await sendBinary(sender, bob, [bob.address(), bobLaptop.address()], more)).toMatchObject(
      { status: 200 },
    );
    const jsonSender = await TestSocket.connect(relay.wsUrl, alice);
    const last = randomBytes(33);
    const viaJson = await jsonSender.request('message.send', {
      accountId: bob.accountId,
      messages: [bob.address(), bobLaptop.address()].map((device) => ({
        ...device,
        type: 1,
        content: last.toString('base64'),
      })),
    });
    expect(viaJson).toMatchObject({ status: 200, body: { stored: 2 } });
    await phone.until(() => phone.envelopes().length === 3, 5_000, 'the phone’s envelopes');
    await laptop.until(() => laptop.envelopes().length === 3, 5_000, 'the laptop’s envelopes');
    const bytesOf = (socket: TestSocket) =>
      socket.envelopes().map((envelope) => Buffer.from(envelope.content, 'base64'));
    expect(bytesOf(phone)).toEqual([contents[0], more[0], last]);
    expect(bytesOf(laptop)).toEqual([contents[1], more[1], last]);
    expect(
      phone.requests.filter((frame: any) => frame.verb === 'envelope' && !frame.binary),
    ).toEqual([]);
    // Acknowledged, so deleted (acknowledgements are deleted in groups, a moment later).
    await expect.poll(() => countQueued(bob)).toBe(0);
    await expect.poll(() => countQueued(bobLaptop)).toBe(0);
    await Promise.all([sender.close(), jsonSender.close(), phone.close(), laptop.close()]);
  });

  it('carry online envelopes, which cross between instances in a NOTIFY, as bytes too', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const sender = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
    const inbox = await TestSocket.connect(relay.wsUrl, bob, 200, { binary: true });
    const typing = randomBytes(40);
    const sent = await sendBinary(sender, bob, [bob.address()], [typing], { online: true });
    expect(sent).toMatchObject({ status: 200, body: { stored: 0 } });
    await inbox.until(() => inbox.envelopes().length === 1, 5_000, 'the online envelope');
    const [envelope] = inbox.envelopes();
    expect(envelope).toMatchObject({ online: true });
    expect(Buffer.from(envelope?.content ?? '', 'base64')).toEqual(typing);
    expect((inbox.requests.find((frame) => frame.verb === 'envelope') as any).binary).toBe(true);
    expect(await countQueued(bob)).toBe(0);
    await Promise.all([sender.close(), inbox.close()]);
  });

  it('answer a send whose lengths or body are wrong with 400, and store nothing', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
    const content = randomBytes(100);
    const body = (length: unknown) => ({
      accountId: bob.accountId,
      messages: [{ ...bob.address(), type: 1, content: length }],
    });
    for (const [length, contents] of [
      [99, [content]], // a byte left over
      [101, [content]], // one short
      ['AAAA', [content]], // base64 where a length goes
      [0, []],
    ] as const) {
      const answer = await socket.request('message.send', body(length), contents);
      expect(answer, `content ${length}`).toMatchObject({
        status: 400,
        body: { error: { code: 'VALIDATION_FAILED' } },
      });
    }
    // The HTTP route's other answers, as for a JSON send.
    const tooBig = await sendBinary(socket, bob, [bob.address()], [randomBytes(4097)], {
      online: true,
    });
    expect(tooBig).toMatchObject({ status: 413, body: { error: { code: 'CONTENT_TOO_LARGE' } } });
    expect(await countQueued(bob)).toBe(0);
    expect(errorFrames(socket)).toEqual([]);
    await socket.close();
  });

  it('are refused as frames on a JSON socket, for other verbs, and when malformed; the socket goes on', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const header = (verb: string) =>
      JSON.stringify({ type: 'request', id: 90, verb, body: { accountId: bob.accountId } });

    const json = await TestSocket.connect(relay.wsUrl, alice);
    json.sendRaw(Buffer.from(joinBinaryFrame(header('message.send'), [])));
    await json.until(() => errorFrames(json).length === 1, 5_000, 'an error frame');
    expect(errorFrames(json)[0]).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: expect.stringContaining('frames=binary'),
    });
    await json.close();

    const binary = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
    const refused: [string, Buffer, string][] = [
      ['a ping', Buffer.from(joinBinaryFrame(header('ping'), [])), 'VALIDATION_FAILED'],
      [
        'a response',
        Buffer.from(joinBinaryFrame('{"type":"response","id":1,"status":200}', [])),
        'VALIDATION_FAILED',
      ],
      ['one byte', Buffer.from([0]), 'VALIDATION_FAILED'],
      ['a header past the end', Buffer.from([0, 200, 0x7b]), 'VALIDATION_FAILED'],
      ['a header not JSON', Buffer.from([0, 2, 0x7b, 0x7b]), 'MALFORMED_JSON'],
      ['a header not a frame', Buffer.from(joinBinaryFrame('{"a":1}', [])), 'VALIDATION_FAILED'],
    ];
    for (const [, frame] of refused) binary.sendRaw(frame);
    await binary.until(() => errorFrames(binary).length === refused.length, 5_000, 'errors');
    expect(errorFrames(binary).map((frame) => frame.code)).toEqual(
      refused.map(([, , code]) => code),
    );
    expect(await binary.request('ping')).toMatchObject({ status: 200 });
    await binary.close();
  });

  it('survive random binary frames: each is refused with an error frame or answered 400 or 404', async () => {
    const alice = await TestDevice.register(relay.url);
    const pick = <T>(items: readonly T[]): T => items[randomInt(items.length)] as T;
    const randomSend = (): Buffer => {
      const count = randomInt(1, 4);
      const lengths = Array.from({ length: count }, () => randomInt(1, 300));
      const header = JSON.stringify({
        type: 'request',
        id: randomInt(1, 1_000_000),
        verb: 'message.send',
        body: {
          accountId: pick([randomUUID(), 'not-an-id']),
          messages: lengths.map((length, index) => ({
            deviceId: index + 1,
            registrationId: 1,
            type: 1,
            content: pick([length, length, -1, 'x', 1.5]),
          })),
        },
      });
      // Contents of the stated lengths, or a few bytes more or less.
      const total = lengths.reduce((a, b) => a + b, 0) + pick([0, 0, 1, -1, 7]);
      return Buffer.from(joinBinaryFrame(header, [randomBytes(Math.max(0, total))]));
    };
    const generators: (() => Buffer)[] = [
      () => randomBytes(randomInt(0, 300)),
      () => {
        const frame = randomSend();
        return frame.subarray(0, randomInt(0, frame.length)); // cut anywhere
      },
      randomSend,
      () => {
        const frame = randomSend();
        const at = randomInt(2, frame.length);
        frame[at] = (frame[at] as number) ^ (1 << randomInt(8)); // one bit flipped
        return frame;
      },
    ];
    /** What the relay must answer: the layout, written out. */
    const expected = (frame: Buffer): 'error' | 'response' => {
      if (frame.length < 2 || 2 + frame.readUInt16BE(0) > frame.length) return 'error';
      let value: any;
      try {
        value = JSON.parse(frame.toString('latin1', 2, 2 + frame.readUInt16BE(0)));
      } catch {
        return 'error';
      }
      const isFrame =
        value?.type === 'request' &&
        Number.isInteger(value.id) &&
        value.id >= 0 &&
        value.id <= 0xffffffff &&
        typeof value.verb === 'string' &&
        value.verb.length <= 32 &&
        Object.keys(value).every((key) => ['type', 'id', 'verb', 'body'].includes(key));
      return isFrame && value.verb === 'message.send' ? 'response' : 'error';
    };
    const kinds = { error: 0, response: 0 };
    for (let round = 0; round < 8; round += 1) {
      const socket = await TestSocket.connect(relay.wsUrl, alice, 200, { binary: true });
      const frames = Array.from({ length: 15 }, () => pick(generators)());
      for (const frame of frames) {
        // Replies only: the relay's own requests (queue.empty) may come at any time.
        const replies = () => socket.frames.filter((f) => f.type !== 'request');
        const before = replies().length;
        socket.sendRaw(frame);
        await socket.until(() => replies().length > before, 5_000, 'a reply');
        const reply = replies().at(-1);
        const context = `${frame.toString('latin1').slice(0, 200)} → ${JSON.stringify(reply)}`;
        kinds[expected(frame)] += 1;
        if (expected(frame) === 'error') {
          expect(reply, context).toMatchObject({ type: 'error' });
          expect(['MALFORMED_JSON', 'VALIDATION_FAILED'], context).toContain(reply.code);
        } else {
          expect(reply, context).toMatchObject({ type: 'response' });
          expect([400, 404], context).toContain(reply.status);
        }
      }
      expect(await socket.request('ping')).toMatchObject({ status: 200 });
      await socket.close();
    }
    // Both ways of refusing were exercised, not only the first check.
    expect(kinds.error).toBeGreaterThan(10);
    expect(kinds.response).toBeGreaterThan(10);
    expect(relay.logs.filter((line) => /"level":(50|60)/.test(line))).toEqual([]);
  });
});
