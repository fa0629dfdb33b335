import { randomBytes, randomInt } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClientError,
  isRetryable,
  MemoryStore,
  normalizePhoneNumber,
  PrivcommClient,
  type AccountId,
  type E164,
  type OutboxEntry,
  type SocketLike,
  type Transport,
} from '@privcomm/client';
import {
  auditPrivacy,
  byScale,
  faultRandom,
  FaultCluster,
  printFigures,
  queuedEnvelopes,
  sleep,
} from '@privcomm/server/testing';
import { memorySigner } from '../support/memory-signer.ts';
import { nodeBase64, openNodeEngine } from '../../src/index.ts';

/**
 * The client core (real libsignal, sealed sender) keeps sending and receiving while relays are
 * killed and PostgreSQL restarts under it. At the end every message is delivered to the
 * application exactly once, in the order its sender sent it, and nothing stays queued.
 */
const PER_PEER = byScale(8, 100);
/** Clients keep sending until at least this many faults hit them (a quiet machine is quick). */
const MIN_FAULTS = byScale(2, 6);

/**
 * A store that remembers what left its outbox, so that the test can put an accepted message back:
 * what a client does when the relay's 200 is lost on the way (it sends again under the same
 * message id, as a new envelope). Kills and restarts cause that only by chance, so each run also
 * does it on purpose, and the recipients' de-duplication by message id is always exercised.
 */
class RememberingStore extends MemoryStore {
  readonly removed = new Map<string, OutboxEntry>();

  override async removeOutbox(id: string): Promise<void> {
    const entry = (await this.outbox()).find((e) => e.id === id);
    if (entry) this.removed.set(id, entry);
    await super.removeOutbox(id);
  }
}

let cluster: FaultCluster;
const secrets = new Set<string>();
let clients: FaultClient[] = [];
/** The numbers the clients publish for discovery: the privacy audit looks for them in the dump. */
const phoneNumbers: E164[] = [];

beforeAll(async () => {
  cluster = await FaultCluster.start();
});
afterAll(async () => {
  await cluster?.destroy();
});

interface FaultClient {
  name: string;
  client: PrivcommClient;
  store: RememberingStore;
  id: AccountId;
  /** Texts as the application saw them arrive ('message' events), by sender. */
  arrivals: Map<string, string[]>;
  running: Promise<void>;
}

const newClient = async (name: string, relay: number): Promise<FaultClient> => {
  const transport: Transport = {
    relayUrl: cluster.url(relay),
    fetch: (url, init) => fetch(url, { ...init, signal: AbortSignal.timeout(15_000) }),
    openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    // Alice and Carol speak binary frames, as the CLI does; Bob JSON frames, as the app does.
    ...(relay % 2 === 0 ? { binaryFrames: nodeBase64 } : {}),
  };
  const store = new RememberingStore();
  const client = await PrivcommClient.open({
    transport,
    engine: await openNodeEngine(':memory:'),
    store,
    signer: memorySigner(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    // Backoff and retry waits a tenth as long: the test is about outcomes, not time.
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms / 10)),
  });
  await client.register({ name });
  const id = client.profile!.accountId;
  secrets.add(id);
  // Findable by phone number (an OPRF token on the relay, never the number or a plain hash).
  const phone = normalizePhoneNumber(`+49151${randomInt(1_000_000, 10_000_000)}`);
  phoneNumbers.push(phone);
  await client.discovery.publish(phone);
  const arrivals = new Map<string, string[]>();
  client.subscribe((event) => {
    if (event.type !== 'message' || event.message.direction !== 'in') return;
    const from = event.message.conversation;
    arrivals.set(from, [...(arrivals.get(from) ?? []), event.message.text]);
  });
  const running = client.start();
  running.catch(() => undefined);
  return { name, client, store, id, arrivals, running };
};

describe('clients through relay kills and database restarts', () => {
  it(
    `deliver every message exactly once, in order per sender (at least ${PER_PEER} per pair, through at least ${MIN_FAULTS} faults)`,
    async () => {
      const random = faultRandom('clients through faults');
      clients = await Promise.all(['alice', 'bob', 'carol'].map((name, i) => newClient(name, i)));
      // Each finds the others by number before the faults begin.
      for (const me of clients) {
        const found = await me.client.discovery.lookup(phoneNumbers);
        expect([...found.values()].flat().sort()).toEqual(clients.map((c) => c.id).sort());
      }
      const sent = new Map<string, string[]>(); // "from>to" -> texts in the order sent

      // Each client sends to the others in turn; a message the relay could not take stays in the
      // outbox, and the application waits for it to go before the next, so order is defined.
      let kills = 0;
      let databaseRestarts = 0;
      let offlinePeriods = 0;
      let answersLost = 0;
      let sending = true;
      const traffic = Promise.all(
        clients.map(async (me) => {
          for (let n = 0; n < PER_PEER || kills + databaseRestarts < MIN_FAULTS; n += 1) {
            for (const peer of clients.filter((c) => c !== me)) {
              const text = `c:${me.name}:${n}:${randomBytes(3).toString('hex')}`;
              const key = `${me.id}>${peer.id}`;
              sent.set(key, [...(sent.get(key) ?? []), text]);
              await me.client.sendText(peer.id, text).catch((error: unknown) => {
                if (!(error instanceof ClientError && isRetryable(error))) throw error;
              });
              // Only the message to the peer: the copy to one's own devices waits a random
              // time in the outbox by design (SECURITY.md, sync copies) and has no order to keep.
              const flushed = async (): Promise<void> => {
                while ((await me.store.outbox()).some((entry) => entry.recipient === peer.id)) {
                  await me.client.flushOutbox().catch(() => undefined);
                  await sleep(200);
                }
              };
              await flushed();
              if (n === 0) {
                // The first text to each peer is sent again once accepted: its answer was lost.
                const id = (await me.client.history(peer.id)).find(
                  (m) => m.direction === 'out' && m.text === text,
                )?.id;
                const entry = id === undefined ? undefined : me.store.removed.get(id);
                if (!entry) throw new Error(`the accepted text ${text} left no outbox entry`);
                await me.store.addOutbox(entry);
                await flushed();
                answersLost += 1;
              }
            }
          }
        }),
      ).finally(() => (sending = false));

      while (sending) {
        await sleep(random.int(2_000, 5_000));
        if (!sending) break;
        const draw = random.next();
        if (offlinePeriods === 0 || draw < 0.25) {
          // A recipient offline for a while (its app closed): the others' messages to it queue
          // up, and its queue is then delivered as a backlog, whose order the check below judges.
          // First in every schedule, so that every run has one.
          const absent = random.pick(clients);
          await absent.client.stop();
          await absent.running;
          await sleep(random.int(2_000, 4_000));
          absent.running = absent.client.start();
          absent.running.catch(() => undefined);
          offlinePeriods += 1;
        } else if (draw < 0.75) {
          const victim = random.int(0, cluster.size - 1);
          await cluster.kill(victim);
          kills += 1;
          await cluster.restart(victim);
        } else {
          await cluster.postgres.stopImmediately();
          await sleep(random.int(1_000, 3_000));
          await cluster.postgres.start();
          cluster.proxy.setUpstream(cluster.postgres.port);
          databaseRestarts += 1;
        }
      }
      await traffic;

      const history = async (me: FaultClient, from: FaultClient): Promise<string[]> =>
        (await me.client.history(from.id)).filter((m) => m.direction === 'in').map((m) => m.text);
      for (const me of clients) {
        for (const from of clients.filter((c) => c !== me)) {
          const expected = sent.get(`${from.id}>${me.id}`);
          await expect
            .poll(() => history(me, from), { timeout: 120_000, interval: 500 })
            .toEqual(expected);
        }
      }
      // Receipts and sync copies settle; then nothing is left in any queue.
      await expect
        .poll(() => queuedEnvelopes(cluster.postgres.url), { timeout: 60_000, interval: 500 })
        .toBe(0);

      let delivered = 0;
      let duplicates = 0;
      let outOfOrder = 0;
      for (const me of clients) {
        for (const from of clients.filter((c) => c !== me)) {
          const arrived = me.arrivals.get(from.id) ?? [];
          const expected = sent.get(`${from.id}>${me.id}`) ?? [];
          delivered += new Set(arrived).size;
          duplicates += arrived.length - new Set(arrived).size;
          if (JSON.stringify(arrived) !== JSON.stringify(expected)) outOfOrder += 1;
        }
      }
      const total = [...sent.values()].reduce((sum, texts) => sum + texts.length, 0);
      printFigures('clients through faults', {
        sent: total,
        delivered,
        lost: total - delivered,
        duplicates,
        pairsOutOfOrder: outOfOrder,
        kills,
        databaseRestarts,
        offlinePeriods,
        answersLost,
        seed: random.seed,
      });
      expect(kills + databaseRestarts).toBeGreaterThanOrEqual(MIN_FAULTS);
      expect(offlinePeriods).toBeGreaterThan(0);
      expect(answersLost).toBe(clients.length * (clients.length - 1));
      expect({ lost: total - delivered, duplicates, outOfOrder }).toEqual({
        lost: 0,
        duplicates: 0,
        outOfOrder: 0,
      });
      for (const me of clients) await me.client.stop();
      await Promise.all(clients.map((me) => me.running));
    },
    byScale(300_000, 1_200_000),
  );

  it('leaves no address, token, account id, text or phone number in the logs or the database', async () => {
    // One message waits for its offline recipient, so that the dump holds a sealed envelope
    // whose sender the audit can look for.
    const [alice, bob] = clients as [FaultClient, FaultClient];
    await alice.client.sendText(bob.id, `c:alice:queued:${randomBytes(3).toString('hex')}`);
    // Accepted by the relay: gone from the outbox (a sync copy to her own devices may wait there).
    const toBob = (await alice.store.outbox()).filter((entry) => entry.recipient === bob.id);
    expect(toBob).toEqual([]);
    await auditPrivacy(cluster, {
      secrets,
      markers: ['c:alice:', 'c:bob:', 'c:carol:'],
      phoneNumbers,
      senders: clients.map((c) => c.id),
      queuedEnvelopes: 1,
    });
  });
});
