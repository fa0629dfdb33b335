import { randomBytes, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryStore,
  PrivcommClient,
  RelayApi,
  type Address,
  type AuthSigner,
  type Decrypted,
  type SignalEngine,
  type SocketLike,
  type Transport,
} from '@privcomm/client';
import { deviceIdOf } from '@privcomm/client/testing';
import {
  createTestDatabase,
  runInCommon,
  startRelay,
  TestSocket,
  type TestRelay,
} from '@privcomm/server/testing';
import { memorySigner } from './support/memory-signer.ts';
import {
  openNodeEngine,
  SEALED_SENDER_V2,
  SEALED_SENDER_V2_AT_REST,
  splitMultiRecipientMessage,
} from '../src/index.ts';

/**
 * A group message as the client core will send it: the Node engine's groupEncrypt, one upload
 * through the client core's relay API (RelayApi.sendMultiRecipient) to a real relay, and each
 * recipient device's engine opening the envelope the relay queued for it, which the relay sealed
 * at rest to the recipient account's identity key.
 */
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

const transport = (): Transport => ({
  relayUrl: relay.url,
  fetch: (url, init) => fetch(url, init),
  openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
});

interface Member {
  client: PrivcommClient;
  engine: SignalEngine;
  signer: AuthSigner;
  address: Address;
  api: RelayApi;
}

const register = async (name: string): Promise<Member> => {
  const engine = await openNodeEngine(':memory:');
  const signer = memorySigner();
  const client = await PrivcommClient.open({
    transport: transport(),
    engine,
    store: new MemoryStore(),
    signer,
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    syncCopyDelay: { minMs: 0, maxMs: 0 },
  });
  const profile = await client.register({ name });
  const address = { accountId: profile.accountId, deviceId: profile.deviceId };
  return {
    client,
    engine,
    signer,
    address,
    api: new RelayApi(transport(), signer, Date.now, address),
  };
};

/** The envelopes the relay delivers to `member`, once `count` of them (of `type`, if given) came. */
const envelopesOf = async (member: Member, count: number, type?: number) => {
  const socket = await TestSocket.open(relay.wsUrl);
  try {
    const auth = await socket.request('auth', { token: await member.api.currentToken() });
    expect(auth.status).toBe(200);
    const counted = () =>
      socket.envelopes().filter((envelope) => type === undefined || envelope.type === type);
    await socket.until(() => counted().length >= count, 10_000, 'envelopes');
    return socket.envelopes();
  } finally {
    await socket.close();
  }
};

describe('a group message through the relay', () => {
  it("is one upload; each member's engine opens its envelope, and a wrong device set is answered per account", async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const carol = await register('carol');
    // Pairwise first (sessions), and the sender key, as the group layer does.
    for (const member of [bob, carol]) {
      expect((await alice.client.sendText(member.address.accountId, 'hi')).status).toBe('sent');
    }
    const distributionId = randomUUID();
    const distribution = await alice.engine.senderKeyDistribution(distributionId);
    for (const member of [bob, carol]) {
      await member.engine.processSenderKeyDistribution(alice.address, distribution);
    }

    // A device of Bob's (his identity, provisioned) that the relay does not know: Alice has a
    // session with it.
    const ghostAddress = { accountId: bob.address.accountId, deviceId: deviceIdOf(2) };
    const ghost = await openNodeEngine(':memory:');
    const key = await ghost.createProvisioningKey();
    await ghost.openProvisioning(await bob.engine.sealProvisioning(key, new Uint8Array(1)));
    await ghost.setLocalAddress(ghostAddress);
    const ghostIdentity = (await ghost.localIdentity())!;
    await alice.engine.processBundle(ghostAddress, {
      identityKey: ghostIdentity.identityKey,
      deviceId: ghostAddress.deviceId,
      registrationId: ghostIdentity.registrationId,
      signedPreKey: await ghost.generateSignedPreKey(),
      kyberPreKey: (await ghost.generateKyberPreKeys(1))[0]!,
    });
    const wrong = await alice.engine.groupEncrypt(
      distributionId,
      [bob.address, ghostAddress, carol.address],
      new TextEncoder().encode('not yet'),
    );
    expect(await alice.api.sendMultiRecipient(wrong)).toEqual({
      kind: 'mismatched',
      status: 409,
      accounts: [
        {
          accountId: bob.address.accountId,
          missingDevices: [],
          extraDevices: [2],
          staleDevices: [],
        },
      ],
    });

    const message = await alice.engine.groupEncrypt(
      distributionId,
      [bob.address, carol.address],
      new TextEncoder().encode('dinner at 8'),
    );
    expect(message.type).toBe(SEALED_SENDER_V2);
    expect(await alice.api.sendMultiRecipient(message)).toEqual({ kind: 'stored', stored: 2 });

    for (const member of [bob, carol]) {
      // The pairwise "hi" first (in a real client it would have carried the sender key), then
      // the group message; the engine opens them in order.
      const envelopes = await envelopesOf(member, 2);
      expect(envelopes.map((envelope) => envelope.type)).toEqual([1, SEALED_SENDER_V2_AT_REST]);
      const [pairwise, group] = envelopes.map((envelope) =>
        member.engine.decrypt(envelope.id, {
          type: envelope.type,
          content: new Uint8Array(Buffer.from(envelope.content, 'base64')),
        }),
      );
      expect((await pairwise!).distributionId).toBeUndefined();
      const opened = await group!;
      expect(new TextDecoder().decode(opened.plaintext)).toBe('dinner at 8');
      expect(opened.sender).toEqual(alice.address);
      expect(opened.distributionId).toBe(distributionId);
    }
    for (const member of [alice, bob, carol]) await member.client.close();
    await ghost.close();
  });

  it('is stored as shares with no bytes in common, each of which its own device opens', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    const carol = await register('carol');
    const dave = await register('dave');
    // Bob's second device, linked through the client core: it holds his identity key pair.
    const laptopSigner = memorySigner();
    const laptopEngine = await openNodeEngine(':memory:');
    const laptopClient = await PrivcommClient.open({
      transport: transport(),
      engine: laptopEngine,
      store: new MemoryStore(),
      signer: laptopSigner,
      randomBytes: (n) => new Uint8Array(randomBytes(n)),
      syncCopyDelay: { minMs: 0, maxMs: 0 },
    });
    const { linkCode, done } = await laptopClient.startLink();
    await bob.client.addDevice(linkCode);
    const laptopProfile = await done;
    const laptopAddress = { accountId: laptopProfile.accountId, deviceId: laptopProfile.deviceId };
    const laptop: Member = {
      client: laptopClient,
      engine: laptopEngine,
      signer: laptopSigner,
      address: laptopAddress,
      api: new RelayApi(transport(), laptopSigner, Date.now, laptopAddress),
    };
    const recipients = [bob, laptop, carol, dave];
    for (const member of [bob, carol, dave]) {
      expect((await alice.client.sendText(member.address.accountId, 'hi')).status).toBe('sent');
    }
    const distributionId = randomUUID();
    const distribution = await alice.engine.senderKeyDistribution(distributionId);
    for (const member of recipients) {
      await member.engine.processSenderKeyDistribution(alice.address, distribution);
    }
    const message = await alice.engine.groupEncrypt(
      distributionId,
      recipients.map((member) => member.address),
      new TextEncoder().encode('seen by nobody else'),
    );
    expect(await alice.api.sendMultiRecipient(message)).toEqual({ kind: 'stored', stored: 4 });

    // The queue table as a copy of the database shows it.
    const { rows } = await relay.relay.context.database.pool.query<{
      account_id: string;
      device_id: number;
      type: number;
      content: Buffer;
    }>('SELECT account_id, device_id, type, content FROM envelopes WHERE account_id = ANY($1)', [
      recipients.map((member) => member.address.accountId),
    ]);
    const shares = rows.filter((row) => row.type !== 1);
    expect(shares).toHaveLength(4);
    // Every share of the upload ends in libsignal's shared part (ephemeral key, ciphertext).
    const sharedPart = splitMultiRecipientMessage(message)[0]!.ciphertext.content.subarray(1 + 48);
    for (const [i, share] of shares.entries()) {
      expect(share.type).toBe(SEALED_SENDER_V2_AT_REST);
      expect(runInCommon(share.content, sharedPart, 32)).toBe(false);
      for (const other of shares.slice(i + 1)) {
        expect(runInCommon(share.content, other.content, 32)).toBe(false);
      }
    }

    for (const member of recipients) {
      // In order: the pairwise messages first (they tell the engine Alice's identity).
      const envelopes = await envelopesOf(member, 1, SEALED_SENDER_V2_AT_REST);
      const group = envelopes.filter((envelope) => envelope.type === SEALED_SENDER_V2_AT_REST);
      expect(group).toHaveLength(1);
      let opened: Decrypted | undefined;
      for (const envelope of envelopes) {
        const decrypted = await member.engine.decrypt(envelope.id, {
          type: envelope.type,
          content: new Uint8Array(Buffer.from(envelope.content, 'base64')),
        });
        if (envelope.type === SEALED_SENDER_V2_AT_REST) opened = decrypted;
      }
      if (opened === undefined) return expect.fail('the group message was not opened');
      expect(new TextDecoder().decode(opened.plaintext)).toBe('seen by nobody else');
      expect(opened.sender).toEqual(alice.address);
      expect(opened.distributionId).toBe(distributionId);
    }
    for (const member of [alice, ...recipients]) await member.client.close();
  });
});
