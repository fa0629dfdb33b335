import { describe, expect, it } from 'vitest';
import {
  MemoryStore,
  remoteClientStore,
  serveClientStore,
  StoreRecordError,
  type StoreChannel,
} from '../src/index.ts';
import { deviceIdOf, randomAccountId } from '../src/testing/index.ts';
import { storeContract } from '../src/testing/store-contract.ts';

/** A channel through JSON text, as over the web bridge. */
const overJson =
  (serve: (method: string, args: unknown) => Promise<unknown>): StoreChannel =>
  async (method, args) =>
    JSON.parse(JSON.stringify((await serve(method, JSON.parse(JSON.stringify(args)))) ?? null));

// Every store behaviour holds through the channel (a method missing from its table fails here).
storeContract(
  'remote store over JSON, MemoryStore behind',
  async () => ({
    store: remoteClientStore(overJson(serveClientStore(new MemoryStore()))),
    close: async () => {},
  }),
  { describe, it, expect },
);

describe('a ClientStore over a JSON channel', () => {
  it('keeps what MemoryStore keeps: profile, contacts, messages and their changes, the outbox', async () => {
    const behind = new MemoryStore();
    const store = remoteClientStore(overJson(serveClientStore(behind)));
    const me = randomAccountId();
    const bob = randomAccountId();

    expect(await store.profile()).toBeUndefined();
    const profile = {
      relayUrl: 'http://127.0.0.1:1',
      accountId: me,
      deviceId: deviceIdOf(1),
      keysRotatedAt: 5,
    };
    await store.saveProfile(profile);
    expect(await store.profile()).toEqual(profile);

    await store.saveContact({ accountId: bob, name: 'bob', expireSeconds: 0 });
    expect(await store.contacts()).toEqual([{ accountId: bob, name: 'bob', expireSeconds: 0 }]);
    expect(await store.contact(randomAccountId())).toBeUndefined();

    const message = {
      id: 'm1',
      conversation: bob,
      direction: 'in' as const,
      senderDeviceId: 1,
      text: 'hi',
      sentAt: 1,
      receivedAt: 2,
      status: 'delivered' as const,
      expiresAt: 99,
    };
    expect(await store.addMessage(message)).toBe(true);
    expect(await store.addMessage(message)).toBe(false);
    await store.updateMessage(bob, 'm1', { status: 'read', expiresAt: undefined });
    expect(await store.message(bob, 'm1')).toEqual(await behind.message(bob, 'm1'));
    expect((await store.messages(bob))[0]).toMatchObject({ status: 'read', text: 'hi' });
    expect((await store.messages(bob))[0]?.expiresAt).toBeUndefined();

    await store.markProcessed('e1', 10, 0);
    expect(await store.isProcessed('e1')).toBe(true);

    const entry = {
      id: 'o1',
      recipient: bob,
      content: new Uint8Array([0, 1, 255]),
      online: false,
      urgent: true,
      createdAt: 3,
      notBefore: 4,
    };
    await store.addOutbox(entry);
    expect(await store.outbox()).toEqual([entry]);
    expect((await behind.outbox())[0]?.content).toEqual(new Uint8Array([0, 1, 255]));
    await store.removeOutbox('o1');
    expect(await store.outbox()).toEqual([]);
  });

  it('refuses, before the store is touched, unknown methods and malformed arguments', async () => {
    const serve = serveClientStore(new MemoryStore());
    await expect(serve('dropEverything', [])).rejects.toThrow(StoreRecordError);
    await expect(serve('contact', [])).rejects.toThrow('contact takes 1 arguments');
    await expect(
      serve('saveContact', [{ accountId: 'not-an-id', name: 'x', expireSeconds: 0 }]),
    ).rejects.toThrow("saveContact's argument 1.accountId must be an account id");
    await expect(
      serve('updateMessage', ['c', 'm', { status: 'sent', sql: 'DROP TABLE' }]),
    ).rejects.toThrow('must be free of sql');
    await expect(
      serve('addOutbox', [
        {
          id: 'o',
          recipient: randomAccountId(),
          content: '%%',
          online: false,
          urgent: false,
          createdAt: 1,
        },
      ]),
    ).rejects.toThrow('content must be base64');
  });

  it('refuses an answer of the wrong shape from the other end', async () => {
    const store = remoteClientStore(async () => ({
      relayUrl: 'x',
      accountId: 'nobody',
      deviceId: 1,
      keysRotatedAt: 0,
    }));
    await expect(store.profile()).rejects.toThrow(
      "the store's answer to profile.accountId must be an account id",
    );
  });
});
