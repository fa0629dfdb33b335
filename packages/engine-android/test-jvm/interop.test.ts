import { randomBytes, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryStore,
  PrivcommClient,
  type Address,
  type Ciphertext,
  type ClientEvent,
  type SignalEngine,
  type SocketLike,
  type Transport,
} from '@privcomm/client';
import { deviceIdOf, randomAccountId } from '@privcomm/client/testing';
import { openNodeEngine, splitMultiRecipientMessage } from '@privcomm/engine-node';
import { createTestDatabase, startRelay, type TestRelay } from '@privcomm/server/testing';
import { memorySigner } from '../../engine-node/test/support/memory-signer.ts';
import { KotlinBridge, openKotlinEngine } from '../src/index.ts';

/**
 * Interoperability: the Kotlin engine (libsignal-client 0.80.2 for the JVM) and the Node
 * engine (@signalapp/libsignal-client 0.103) talk to each other, and each to its own kind:
 * PQXDH session starts (PreKey messages with Kyber prekeys), the Double Ratchet both ways,
 * sealed sender, safety numbers, provisioning, group messages (sender keys under sealed sender
 * v2). First engine to engine, then as the client core uses them, through a real relay, first
 * contact included.
 */
let bridge: KotlinBridge;
let relay: TestRelay;
let drop: () => Promise<void>;

beforeAll(async () => {
  bridge = await KotlinBridge.start();
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await bridge?.stop();
  await relay?.close();
  await drop?.();
});

type Kind = 'kotlin' | 'node';
const openEngine = (kind: Kind): Promise<SignalEngine> =>
  kind === 'kotlin' ? openKotlinEngine(bridge, ':memory:') : openNodeEngine(':memory:');

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const read = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

const PAIRS: readonly (readonly [Kind, Kind])[] = [
  ['kotlin', 'node'],
  ['node', 'kotlin'],
  ['kotlin', 'kotlin'],
];

describe('interoperability, engine to engine', () => {
  interface Device {
    engine: SignalEngine;
    address: Address;
  }
  const opened: SignalEngine[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((engine) => engine.close()));
  });

  const device = async (kind: Kind): Promise<Device> => {
    const engine = await openEngine(kind);
    opened.push(engine);
    await engine.createIdentity();
    const address = { accountId: randomAccountId(), deviceId: deviceIdOf(1) };
    await engine.setLocalAddress(address);
    return { engine, address };
  };

  const deliver = async (from: Device, to: Device, message: string): Promise<void> => {
    const ciphertext = await from.engine.encrypt(to.address, text(message));
    const decrypted = await to.engine.decrypt(randomUUID(), ciphertext);
    expect(read(decrypted.plaintext)).toBe(message);
    expect(decrypted.sender).toEqual(from.address);
  };

  for (const [first, second] of PAIRS) {
    for (const lastResort of [false, true]) {
      it(`${first} starts a session with ${second} (${lastResort ? 'last-resort' : 'one-time'} Kyber prekey), and they talk both ways`, async () => {
        const a = await device(first);
        const b = await device(second);
        const identity = await b.engine.localIdentity();
        await a.engine.processBundle(b.address, {
          identityKey: identity!.identityKey,
          deviceId: deviceIdOf(1),
          registrationId: identity!.registrationId,
          signedPreKey: await b.engine.generateSignedPreKey(),
          ...(lastResort ? {} : { preKey: (await b.engine.generatePreKeys(1))[0]! }),
          kyberPreKey: lastResort
            ? await b.engine.generateKyberLastResortPreKey()
            : (await b.engine.generateKyberPreKeys(1))[0]!,
        });
        // Two PreKey messages before any answer, then the ratchet both ways, out of order too.
        await deliver(a, b, 'first contact');
        await deliver(a, b, 'still unanswered');
        await deliver(b, a, 'answer');
        const late = await a.engine.encrypt(b.address, text('late'));
        for (let round = 0; round < 4; round += 1) {
          await deliver(a, b, `a${round}`);
          await deliver(b, a, `b${round}`);
        }
        expect(read((await b.engine.decrypt(randomUUID(), late)).plaintext)).toBe('late');
        const ab = await a.engine.safetyNumber(b.address.accountId);
        const ba = await b.engine.safetyNumber(a.address.accountId);
        expect(ab.digits).toMatch(/^\d{60}$/);
        expect(ba.digits).toBe(ab.digits);
        expect(ba.scannable.length).toBe(ab.scannable.length);
      });
    }

    it(`${first} provisions a new ${second} device with its identity`, async () => {
      const primary = await device(first);
      const fresh = await openEngine(second);
      opened.push(fresh);
      const sealed = await primary.engine.sealProvisioning(
        await fresh.createProvisioningKey(),
        text('link token'),
      );
      expect(read(await fresh.openProvisioning(sealed))).toBe('link token');
      expect((await fresh.localIdentity())?.identityKey).toEqual(
        (await primary.engine.localIdentity())?.identityKey,
      );
    });
  }
});

describe('interoperability, group messages (sender keys, sealed sender v2)', () => {
  interface Device {
    kind: Kind;
    engine: SignalEngine;
    address: Address;
  }
  const opened: SignalEngine[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((engine) => engine.close()));
  });

  const device = async (kind: Kind): Promise<Device> => {
    const engine = await openEngine(kind);
    opened.push(engine);
    await engine.createIdentity();
    const address = { accountId: randomAccountId(), deviceId: deviceIdOf(1) };
    await engine.setLocalAddress(address);
    return { kind, engine, address };
  };

  /** `from` starts a session with `to` from a bundle, as after a relay lookup. */
  const connect = async (from: Device, to: Device): Promise<void> => {
    const identity = await to.engine.localIdentity();
    await from.engine.processBundle(to.address, {
      identityKey: identity!.identityKey,
      deviceId: to.address.deviceId,
      registrationId: identity!.registrationId,
      signedPreKey: await to.engine.generateSignedPreKey(),
      preKey: (await to.engine.generatePreKeys(1))[0]!,
      kyberPreKey: (await to.engine.generateKyberPreKeys(1))[0]!,
    });
  };

  /** `from` hands its sender key for `distributionId` to `to`, inside a pairwise message. */
  const giveSenderKey = async (from: Device, to: Device, distributionId: string) => {
    const message = await from.engine.senderKeyDistribution(distributionId);
    const received = await to.engine.decrypt(
      randomUUID(),
      await from.engine.encrypt(to.address, message),
    );
    expect(received.sender).toEqual(from.address);
    await to.engine.processSenderKeyDistribution(received.sender, received.plaintext);
  };

  /** Sends `message` to `recipients` in one multi-recipient upload; each device's share. */
  const groupSend = async (
    from: Device,
    distributionId: string,
    recipients: readonly Device[],
    message: string,
  ): Promise<Map<Device, Ciphertext>> => {
    const sealed = await from.engine.groupEncrypt(
      distributionId,
      recipients.map((r) => r.address),
      text(message),
    );
    // The relay's split (libsignal's SealedSenderMultiRecipientMessage in Node), whoever sealed.
    const shares = splitMultiRecipientMessage(sealed);
    expect(shares).toHaveLength(recipients.length);
    return new Map(
      recipients.map((r) => {
        const share = shares.find((s) => s.address.accountId === r.address.accountId);
        expect(share?.registrationId).toBe(
          sealed.recipients.find((d) => d.address.accountId === r.address.accountId)
            ?.registrationId,
        );
        return [r, share!.ciphertext];
      }),
    );
  };

  const opens = async (
    to: Device,
    share: Ciphertext,
    from: Device,
    distributionId: string,
    message: string,
  ): Promise<void> => {
    const decrypted = await to.engine.decrypt(randomUUID(), share);
    expect(read(decrypted.plaintext)).toBe(message);
    expect(decrypted.sender).toEqual(from.address);
    expect(decrypted.distributionId).toBe(distributionId);
  };

  for (const sender of ['kotlin', 'node'] as const) {
    it(`a ${sender} sender's group messages open on kotlin and node members; a late key opens what was kept, and a rotation leaves a removed member out`, async () => {
      const a = await device(sender);
      const members = [await device('kotlin'), await device('node'), await device('kotlin')];
      const [k, n, late] = members as [Device, Device, Device];
      const d1 = randomUUID();
      for (const member of members) await connect(a, member);
      await giveSenderKey(a, k, d1);
      await giveSenderKey(a, n, d1);
      // `late` knows a (a pairwise message arrived) but has no sender key yet.
      await late.engine.decrypt(randomUUID(), await a.engine.encrypt(late.address, text('hi')));

      const first = await groupSend(a, d1, members, 'to the group');
      await opens(k, first.get(k)!, a, d1, 'to the group');
      await opens(n, first.get(n)!, a, d1, 'to the group');
      const kept = randomUUID();
      await expect(late.engine.decrypt(kept, first.get(late)!)).rejects.toMatchObject({
        code: 'NO_SENDER_KEY',
        sender: a.address,
        distributionId: d1,
      });
      for (let i = 0; i < 3; i += 1) {
        const more = await groupSend(a, d1, [k, n], `more ${i}`);
        await opens(n, more.get(n)!, a, d1, `more ${i}`);
        await opens(k, more.get(k)!, a, d1, `more ${i}`);
      }
      // The key arrives after later messages: the kept envelope opens all the same.
      await giveSenderKey(a, late, d1);
      const decrypted = await late.engine.decrypt(kept, first.get(late)!);
      expect(read(decrypted.plaintext)).toBe('to the group');
      expect(decrypted.distributionId).toBe(d1);

      // `n` is removed: a new distribution id, given to the others only.
      const d2 = randomUUID();
      await giveSenderKey(a, k, d2);
      await giveSenderKey(a, late, d2);
      const after = await groupSend(a, d2, [k, late, n], 'after the removal');
      await opens(k, after.get(k)!, a, d2, 'after the removal');
      await opens(late, after.get(late)!, a, d2, 'after the removal');
      await expect(n.engine.decrypt(randomUUID(), after.get(n)!)).rejects.toMatchObject({
        code: 'NO_SENDER_KEY',
        distributionId: d2,
      });
    });
  }

  it('a kotlin and a node member each send to the other and to a third, under their own keys', async () => {
    const k = await device('kotlin');
    const n = await device('node');
    const third = await device('kotlin');
    const members = [k, n, third];
    const ids = new Map(members.map((m) => [m, randomUUID()]));
    for (const from of [k, n]) {
      for (const to of members) {
        if (to === from) continue;
        if (!(await from.engine.hasSession(to.address))) await connect(from, to);
        await giveSenderKey(from, to, ids.get(from)!);
      }
    }
    for (const from of [k, n]) {
      const others = members.filter((m) => m !== from);
      const shares = await groupSend(from, ids.get(from)!, others, `from ${from.kind}`);
      for (const to of others)
        await opens(to, shares.get(to)!, from, ids.get(from)!, `from ${from.kind}`);
    }
  });
});

describe('interoperability through a real relay, with the client core', () => {
  const transport = (): Transport => ({
    relayUrl: relay.url,
    fetch: (url, init) => fetch(url, init),
    openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
  });

  interface TestClient {
    client: PrivcommClient;
    events: ClientEvent[];
  }

  const clients: PrivcommClient[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
  });

  const newClient = async (kind: Kind): Promise<TestClient> => {
    const client = await PrivcommClient.open({
      transport: transport(),
      engine: await openEngine(kind),
      store: new MemoryStore(),
      signer: memorySigner(),
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
    });
    clients.push(client);
    const events: ClientEvent[] = [];
    client.subscribe((event) => events.push(event));
    return { client, events };
  };

  const register = async (kind: Kind, name: string): Promise<TestClient> => {
    const test = await newClient(kind);
    await test.client.register({ name });
    return test;
  };

  const received = (test: TestClient, message: string): boolean =>
    test.events.some((e) => e.type === 'message' && e.message.text === message);

  /** Connects, waits until the relay's queue is drained and `message` arrived, disconnects. */
  const receive = async (test: TestClient, message: string): Promise<void> => {
    const start = test.events.length;
    await test.client.connect();
    await expect
      .poll(
        () =>
          test.events.slice(start).some((e) => e.type === 'queue-empty') && received(test, message),
        { timeout: 10_000 },
      )
      .toBe(true);
    await test.client.disconnect();
  };

  for (const [first, second] of PAIRS) {
    it(`${first} writes first to ${second}; they answer each other`, async () => {
      const alice = await register(first, 'alice');
      const bob = await register(second, 'bob');
      const aliceId = alice.client.profile!.accountId;
      const bobId = bob.client.profile!.accountId;

      await alice.client.sendText(bobId, 'hello, first contact');
      await receive(bob, 'hello, first contact');
      await bob.client.sendText(aliceId, 'hello back');
      await receive(alice, 'hello back');
      await alice.client.sendText(bobId, 'and once more');
      await receive(bob, 'and once more');

      expect((await bob.client.history(aliceId)).map((m) => [m.direction, m.text])).toEqual([
        ['in', 'hello, first contact'],
        ['out', 'hello back'],
        ['in', 'and once more'],
      ]);
      const fromAlice = await alice.client.safetyNumber(bobId);
      expect((await bob.client.safetyNumber(aliceId)).digits).toBe(fromAlice.digits);
    });
  }

  it('a kotlin device links to a node primary, and both get messages from a kotlin sender', async () => {
    const alice = await register('kotlin', 'alice');
    const bob = await register('node', 'bob');
    const bobId = bob.client.profile!.accountId;
    const laptop = await newClient('kotlin');
    const { linkCode, done } = await laptop.client.startLink();
    await bob.client.addDevice(linkCode);
    expect(await done).toMatchObject({ accountId: bobId, deviceId: 2 });

    await alice.client.sendText(bobId, 'to both of your devices');
    await receive(bob, 'to both of your devices');
    await receive(laptop, 'to both of your devices');
  });
});
