import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryStore,
  PrivcommClient,
  type ClientEvent,
  type SocketLike,
  type SyncCopyDelay,
} from '@privcomm/client';
import { createTestDatabase, startRelay, type TestRelay } from '@privcomm/server/testing';
import { memorySigner } from './support/memory-signer.ts';
import { openNodeEngine } from '../src/index.ts';

/**
 * Finding 5 of the relay audit: the copy of a sent message to the sender's own other devices
 * was stored right after the message, so in the relay's queue table a row for the recipient
 * followed by a row for one of the sender's devices named the sender. The copies now wait in
 * the sender's outbox for a random time and go out on their own. Real relay, real libsignal.
 */

let relay: TestRelay;
let drop: () => Promise<void>;
const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-sync-copies-'));

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
  rmSync(dir, { recursive: true, force: true });
});

/** A device whose clock the test moves; its store, engine file and key outlive a restart. */
interface Device {
  client: PrivcommClient;
  store: MemoryStore;
  engineFile: string;
  signer: ReturnType<typeof memorySigner>;
  clock: { now: number };
  events: ClientEvent[];
}

const DELAY: SyncCopyDelay = { minMs: 60_000, maxMs: 120_000 };
let engines = 0;

const open = async (
  device: Pick<Device, 'store' | 'engineFile' | 'signer' | 'clock'>,
  syncCopyDelay: SyncCopyDelay = DELAY,
): Promise<Device> => {
  const client = await PrivcommClient.open({
    transport: {
      relayUrl: relay.url,
      fetch: (url, init) => fetch(url, init),
      openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    },
    engine: await openNodeEngine(device.engineFile),
    store: device.store,
    signer: device.signer,
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    now: () => device.clock.now,
    syncCopyDelay,
  });
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  return { ...device, client, events };
};

const newDevice = (syncCopyDelay?: SyncCopyDelay): Promise<Device> =>
  open(
    {
      store: new MemoryStore(),
      engineFile: path.join(dir, `engine-${engines++}.sqlite`),
      signer: memorySigner(),
      clock: { now: Date.now() },
    },
    syncCopyDelay,
  );

/** Connects, waits until the relay says the queue is empty and `until` holds, disconnects. */
const receive = async (device: Device, until: () => boolean = () => true): Promise<void> => {
  const start = device.events.length;
  await device.client.connect();
  await expect
    .poll(() => device.events.slice(start).some((e) => e.type === 'queue-empty') && until())
    .toBe(true);
  await device.client.disconnect();
};

interface Row {
  account_id: string;
  device_id: number;
  seq: string;
  xmin: string;
}

/** The queue as a thief of the database files reads it: in storage order, with transactions. */
const storedRows = async (): Promise<Row[]> =>
  (
    await relay.relay.context.database.pool.query<Row>(
      'SELECT account_id, device_id, seq::text, xmin::text FROM envelopes ORDER BY ctid',
    )
  ).rows;

describe("copies to the sender's own devices", () => {
  it('are not stored next to, or with, the messages they copy, and every copy arrives', async () => {
    const alice = await newDevice();
    await alice.client.register({ name: 'alice' });
    const laptop = await newDevice();
    const { linkCode, done } = await laptop.client.startLink();
    await alice.client.addDevice(linkCode);
    await done;
    const bob = await newDevice();
    await bob.client.register({ name: 'bob' });
    const carol = await newDevice();
    await carol.client.register({ name: 'carol' });
    const [aliceId, bobId, carolId] = [alice, bob, carol].map((d) => d.client.profile!.accountId);
    await receive(alice); // the laptop's contacts request
    const laptopRows = (rows: Row[]) =>
      rows.filter((r) => r.account_id === aliceId && r.device_id === 2);

    const earlier = new Set(laptopRows(await storedRows()).map((r) => r.seq));
    const texts = ['one', 'two', 'three', 'four'];
    const sentAt = alice.clock.now;
    for (const text of texts) await alice.client.sendText(bobId!, text);

    // Sent: the four messages. The copies wait in Alice's outbox, each for its own random time.
    expect(laptopRows(await storedRows()).filter((r) => !earlier.has(r.seq))).toEqual([]);
    const copies = (await alice.store.outbox()).filter((e) => e.recipient === aliceId);
    expect(copies).toHaveLength(4);
    for (const copy of copies) {
      expect(copy.notBefore).toBeGreaterThanOrEqual(sentAt + DELAY.minMs);
      expect(copy.notBefore).toBeLessThanOrEqual(sentAt + DELAY.maxMs);
    }

    // Other users' traffic meanwhile, then the copies' time comes and Alice connects.
    await carol.client.sendText(bobId!, 'from carol');
    await bob.client.sendText(carolId!, 'from bob');
    alice.clock.now += DELAY.maxMs;
    await alice.client.connect();
    await alice.client.disconnect();
    expect(await alice.store.outbox()).toEqual([]);

    const rows = await storedRows();
    const toBob = rows.filter((r) => r.account_id === bobId);
    const copyRows = laptopRows(rows).filter((r) => !earlier.has(r.seq));
    expect(copyRows).toHaveLength(4);
    // No copy was committed with a message to Bob, or stored before the traffic after them.
    const bobTransactions = new Set(toBob.map((r) => r.xmin));
    const lastOther = Math.max(...rows.filter((r) => r.account_id === carolId).map((r) => +r.xmin));
    for (const copy of copyRows) {
      expect(bobTransactions.has(copy.xmin)).toBe(false);
      expect(+copy.xmin).toBeGreaterThan(lastOther);
    }
    // In storage order, no message from Alice to Bob is followed by a row for Alice's devices.
    const fromAlice = toBob.slice(0, 4); // then Carol's
    for (const message of fromAlice) {
      const next = rows[rows.indexOf(message) + 1];
      expect(next?.account_id).not.toBe(aliceId);
    }

    // The laptop gets every copy, as messages sent from this account.
    await receive(laptop, () => laptop.events.filter((e) => e.type === 'message').length === 4);
    const history = await laptop.client.history(bobId!);
    expect(history.map((m) => [m.text, m.direction, m.status]).sort()).toEqual(
      texts.map((text) => [text, 'out', 'sent']).sort(),
    );
  });

  it('wait across a restart of the sender, and go out once it connects again', async () => {
    const alice = await newDevice();
    await alice.client.register({ name: 'alice' });
    const laptop = await newDevice();
    const { linkCode, done } = await laptop.client.startLink();
    await alice.client.addDevice(linkCode);
    await done;
    const bob = await newDevice();
    await bob.client.register({ name: 'bob' });
    const bobId = bob.client.profile!.accountId;

    await alice.client.sendText(bobId, 'before the restart');
    await alice.client.close();
    const restarted = await open(alice);
    restarted.clock.now += DELAY.maxMs;
    await receive(restarted);
    expect(await restarted.store.outbox()).toEqual([]);
    await receive(laptop, () => laptop.events.some((e) => e.type === 'message'));
    expect((await laptop.client.history(bobId)).map((m) => m.text)).toEqual(['before the restart']);
  });

  it('go out at their time while the sender stays connected', async () => {
    // The sender's real clock and a short window: its timer sends the copy by itself.
    const shortDelay = { minMs: 0, maxMs: 200 };
    const alice = await newDevice(shortDelay);
    const clock = alice.clock;
    const tick = setInterval(() => (clock.now = Date.now()), 10);
    try {
      await alice.client.register({ name: 'alice' });
      const laptop = await newDevice();
      const { linkCode, done } = await laptop.client.startLink();
      await alice.client.addDevice(linkCode);
      await done;
      const bob = await newDevice();
      await bob.client.register({ name: 'bob' });
      const bobId = bob.client.profile!.accountId;
      await alice.client.connect();
      await alice.client.sendText(bobId, 'while connected');
      await expect.poll(async () => (await alice.store.outbox()).length).toBe(0);
      await alice.client.disconnect();
      await receive(laptop, () => laptop.events.some((e) => e.type === 'message'));
      expect((await laptop.client.history(bobId)).map((m) => m.text)).toEqual(['while connected']);
    } finally {
      clearInterval(tick);
    }
  });
});
