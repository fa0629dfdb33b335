import { describe, expect, it } from 'vitest';
import type { Envelope } from '@privcomm/wire';
import { encodeContent, type Content } from '../src/content.ts';
import { EngineError, UntrustedIdentityError } from '../src/engine.ts';
import { ClientError } from '../src/errors.ts';
import type { ClientEvent } from '../src/events.ts';
import { Receiver } from '../src/receiver.ts';
import { MemoryStore } from '../src/store.ts';
import { utf8Encode } from '../src/bytes.ts';
import { CapturingLogger, FakeEngine } from './support/fakes.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';

const ALICE = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');
const self = { accountId: BOB, deviceId: deviceIdOf(1) };
const alice = { accountId: ALICE, deviceId: deviceIdOf(1) };

let next = 0;
const envelopeId = (): string => `00000000-0000-4000-8000-${String(++next).padStart(12, '0')}`;

const envelope = (content: string, id = envelopeId()): Envelope => ({
  id,
  type: 6,
  content,
  urgent: false,
  online: false,
});
const textFrom = (sender: typeof alice, text: string, id = `m-${text}`): Envelope =>
  envelope(
    FakeEngine.ciphertext(sender, encodeContent({ kind: 'text', id, sentAt: 1, text } as Content)),
  );

const setup = (
  identityKey: (accountId: string) => Promise<Uint8Array> = async () => new Uint8Array(33),
  options: { blocked?: string[]; typingIndicators?: boolean } = {},
) => {
  const engine = new FakeEngine(self);
  const store = new MemoryStore();
  const logger = new CapturingLogger();
  const events: ClientEvent[] = [];
  const receiver = new Receiver({
    engine,
    store,
    identityKey,
    calls: { receive: () => undefined, receiveSync: () => undefined },
    groups: {
      receive: async () => 'duplicate' as const,
      isMember: async () => false,
      info: async () => {
        throw new Error('no groups here');
      },
      answerKeyRequest: async () => undefined,
      requestKey: async () => undefined,
    },
    self: () => self,
    isBlocked: (accountId) => options.blocked?.includes(accountId) ?? false,
    typingIndicators: () => options.typingIndicators ?? true,
    now: () => 1_000,
    emit: (event) => events.push(event),
    logger,
  });
  return { engine, store, logger, events, receiver };
};

describe('receiver', () => {
  it('stores a text, owes a delivery receipt, and acknowledges it only once recorded', async () => {
    const { receiver, store, events, engine } = setup();
    const item = textFrom(alice, 'hello');
    expect(await receiver.receive(item)).toBe(200);
    expect(await store.messages(ALICE)).toEqual([
      expect.objectContaining({
        id: 'm-hello',
        text: 'hello',
        direction: 'in',
        status: 'delivered',
      }),
    ]);
    expect(await store.isProcessed(item.id)).toBe(true);
    expect(engine.forgotten).toEqual([item.id]);
    expect(events.map((e) => e.type)).toEqual(['message']);
    expect(receiver.takeOwedReceipts()).toEqual([{ to: ALICE, messageIds: ['m-hello'] }]);
    expect(receiver.takeOwedReceipts()).toEqual([]);
  });

  it('owes receipts for an account’s group messages apart from its one-to-one messages', () => {
    const { receiver } = setup();
    const group = '00112233445566778899aabbccddeeff';
    receiver.owe(ALICE, ['a']);
    receiver.owe(ALICE, ['g1'], group);
    receiver.owe(ALICE, ['b']);
    receiver.owe(ALICE, ['g2'], group);
    expect(receiver.takeOwedReceipts()).toEqual([
      { to: ALICE, messageIds: ['a', 'b'] },
      { to: ALICE, groupId: group, messageIds: ['g1', 'g2'] },
    ]);
  });

  it('drops malformed and undecryptable envelopes with a logged reason, and goes on with the rest', async () => {
    const { receiver, store, logger, events, engine } = setup();
    const queue: Envelope[] = [
      textFrom(alice, 'first'),
      envelope('not base64!'),
      { ...textFrom(alice, 'x'), id: 'NOT-A-UUID' },
      textFrom(alice, 'fails to decrypt'),
      envelope(FakeEngine.ciphertext(alice, utf8Encode('{"v":1,"kind":"poll"}'))),
      envelope(FakeEngine.ciphertext(alice, new Uint8Array(160))),
      textFrom(alice, 'last'),
    ];
    const answers = [];
    for (const [index, item] of queue.entries()) {
      // The fourth one does not decrypt.
      if (index === 3) engine.failNext.set(ALICE, new EngineError('INVALID_MESSAGE', 'bad mac'));
      answers.push(await receiver.receive(item));
    }
    expect(answers).toEqual([200, 200, 200, 200, 200, 200, 200]);
    expect((await store.messages(ALICE)).map((m) => m.text)).toEqual(['first', 'last']);
    expect(logger.reasons()).toEqual([
      'envelope content is not base64',
      'envelope without a valid id',
      'invalid message',
      'bad padding',
      'bad padding',
    ]);
    expect(events.filter((e) => e.type === 'decryption-failed')).toHaveLength(3);
  });

  it('logs content of an unknown kind with a fixed reason, never its values', async () => {
    const { receiver, logger } = setup();
    const json = utf8Encode(JSON.stringify({ v: 1, kind: 'secret-kind', id: 'a', sentAt: 1 }));
    const padded = new Uint8Array(160);
    padded.set(json);
    padded[json.length] = 0x80;
    expect(await receiver.receive(envelope(FakeEngine.ciphertext(alice, padded)))).toBe(200);
    expect(logger.lines).toEqual([
      { level: 'warn', event: 'content dropped', reason: 'unknown kind' },
    ]);
  });

  it('acknowledges a redelivered envelope again without a second message', async () => {
    const { receiver, store, events } = setup();
    const item = textFrom(alice, 'once');
    expect(await receiver.receive(item)).toBe(200);
    expect(await receiver.receive(item)).toBe(200);
    expect(await store.messages(ALICE)).toHaveLength(1);
    expect(events.filter((e) => e.type === 'message')).toHaveLength(1);
  });

  it('keeps a message from a verified contact whose key changed queued (409), unprocessed', async () => {
    const { receiver, store, events, engine } = setup();
    engine.failNext.set(ALICE, new UntrustedIdentityError(ALICE));
    const item = textFrom(alice, 'later');
    expect(await receiver.receive(item)).toBe(409);
    expect(await store.isProcessed(item.id)).toBe(false);
    expect(events).toEqual([{ type: 'identity-changed', accountId: ALICE }]);
  });

  it('leaves the envelope queued when the relay cannot confirm the sender now', async () => {
    const { receiver, store } = setup(async () => {
      throw new ClientError('RELAY_UNREACHABLE', 'offline');
    });
    const item = textFrom(alice, 'retry me');
    await expect(receiver.receive(item)).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(await store.isProcessed(item.id)).toBe(false);
  });

  it('records copies from its own other devices as sent by this account', async () => {
    const { receiver, store } = setup();
    const ownOther = { accountId: BOB, deviceId: deviceIdOf(2) };
    const text: Content = { kind: 'text', id: 'mine', sentAt: 1, text: 'sent elsewhere' };
    const sync: Content = { kind: 'sync', id: 's', sentAt: 1, to: ALICE, content: text };
    expect(
      await receiver.receive(envelope(FakeEngine.ciphertext(ownOther, encodeContent(sync)))),
    ).toBe(200);
    expect(await store.messages(ALICE)).toEqual([
      expect.objectContaining({ id: 'mine', direction: 'out', status: 'sent' }),
    ]);
    // A "sync" from another account is ignored: only this account's devices speak for it.
    const forged: Content = { ...sync, content: { ...text, id: 'forged' } };
    await receiver.receive(envelope(FakeEngine.ciphertext(alice, encodeContent(forged))));
    expect(await store.message(ALICE, 'forged')).toBeUndefined();
  });

  it('drops what a blocked account sends, unread but acknowledged, and keeps others', async () => {
    const { receiver, store, events } = setup(undefined, { blocked: [ALICE] });
    const item = textFrom(alice, 'let me in');
    expect(await receiver.receive(item)).toBe(200);
    expect(await store.isProcessed(item.id)).toBe(true);
    expect(await store.messages(ALICE)).toEqual([]);
    expect(events).toEqual([]);
    expect(receiver.takeOwedReceipts()).toEqual([]);
  });

  it('shows no typing with typing indicators off, and keeps a stranger from becoming a contact by a timer', async () => {
    const typing = (on: boolean): Envelope => ({
      ...envelope(
        FakeEngine.ciphertext(
          alice,
          encodeContent({ kind: 'typing', id: 't', sentAt: 1, typing: on } as Content),
        ),
      ),
      online: true,
    });
    const on = setup();
    await on.receiver.receive(typing(true));
    expect(on.events.map((e) => e.type)).toEqual(['typing']);
    const off = setup(undefined, { typingIndicators: false });
    await off.receiver.receive(typing(true));
    expect(off.events).toEqual([]);

    const timer: Content = { kind: 'timer', id: 'x', sentAt: 1, expireSeconds: 60 };
    await off.receiver.receive(envelope(FakeEngine.ciphertext(alice, encodeContent(timer))));
    expect(await off.store.contacts()).toEqual([]);
    await off.store.saveContact({ accountId: ALICE, name: 'Alice', expireSeconds: 0 });
    await off.receiver.receive(envelope(FakeEngine.ciphertext(alice, encodeContent(timer))));
    expect(await off.store.contacts()).toEqual([
      { accountId: ALICE, name: 'Alice', expireSeconds: 60 },
    ]);
  });

  it('reports a device that joined this account when it asks for the contacts', async () => {
    const { receiver, events } = setup();
    const newDevice = { accountId: BOB, deviceId: deviceIdOf(3) };
    const request: Content = { kind: 'contacts-request', id: 'r', sentAt: 1 };
    await receiver.receive(envelope(FakeEngine.ciphertext(newDevice, encodeContent(request))));
    expect(events).toEqual([
      { type: 'device-joined', deviceId: 3 },
      { type: 'contacts-requested', fromDevice: 3 },
    ]);
  });
});
