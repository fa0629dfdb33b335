import { describe, expect, it } from 'vitest';
import { MAX_TEXT_BYTES } from '@privcomm/wire';
import { PrivcommClient } from '../src/client.ts';
import { textBytes } from '../src/content.ts';
import { MemoryStore } from '../src/store.ts';
import { FakeEngine } from './support/fakes.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';

const ALICE = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');

/** A client of a relay that cannot be reached: every request it makes is recorded. */
const offlineClient = async () => {
  const store = new MemoryStore();
  await store.saveProfile({
    relayUrl: 'http://relay.test',
    accountId: ALICE,
    deviceId: deviceIdOf(1),
    keysRotatedAt: 0,
  });
  const requests: string[] = [];
  const client = await PrivcommClient.open({
    transport: {
      relayUrl: 'http://relay.test',
      fetch: async (url) => {
        requests.push(url);
        throw new Error('connection refused');
      },
      openSocket: () => {
        throw new Error('no socket');
      },
    },
    engine: new FakeEngine({ accountId: ALICE, deviceId: deviceIdOf(1) }),
    store,
    signer: { publicKey: async () => new Uint8Array(32), sign: async () => new Uint8Array(64) },
    randomBytes: (n) => new Uint8Array(n).fill(7),
    sleep: async () => undefined,
  });
  return { client, store, requests };
};

describe('text size limit', () => {
  it('counts UTF-8 bytes of the JSON string', () => {
    expect(textBytes('abc')).toBe(3);
    expect(textBytes('é👋')).toBe(6);
    expect(textBytes('a\nb"')).toBe(6);
  });

  it('refuses a too-long text before storing or sending anything, saying how long a text may be', async () => {
    const { client, store, requests } = await offlineClient();
    const text = 'é'.repeat(MAX_TEXT_BYTES / 2) + 'x';
    await expect(client.sendText(BOB, text)).rejects.toMatchObject({
      code: 'TEXT_TOO_LONG',
      message: expect.stringContaining(`at most ${MAX_TEXT_BYTES} bytes`),
    });
    expect(await store.messages(BOB)).toEqual([]);
    expect(await store.outbox()).toEqual([]);
    expect(requests).toEqual([]);
  });

  it('keeps a text of exactly the limit, to be sent when the relay is back', async () => {
    const { client, store, requests } = await offlineClient();
    const text = 'é'.repeat(MAX_TEXT_BYTES / 2);
    await expect(client.sendText(BOB, text)).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(requests.length).toBeGreaterThan(0);
    expect((await store.messages(BOB)).map((m) => m.status)).toEqual(['sending']);
    expect(await store.outbox()).toHaveLength(1);
  });
});
