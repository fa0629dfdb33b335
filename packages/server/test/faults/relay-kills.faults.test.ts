import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDevice } from '../support/client.ts';
import { FaultCluster } from '../support/fault-cluster.ts';
import { byScale, faultRandom, printFigures, sleep } from '../support/fault-schedule.ts';
import {
  DeliveryLedger,
  FaultReceiver,
  queuedEnvelopes,
  sendUntilAccepted,
} from '../support/fault-traffic.ts';
import { auditPrivacy } from '../support/privacy-audit.ts';

/**
 * kill -9 of a random relay every few seconds while senders and receivers spread over three
 * relays: every message a relay accepted (answered 200) is delivered, nothing is delivered that
 * nobody sent, and each sender's messages arrive in the order they were accepted.
 */
const SENDS = Number(process.env.PRIVCOMM_FAULT_SENDS ?? byScale(600, 10_000));
/** Kills the run must see; sending goes on until they have happened. */
const MIN_KILLS = byScale(2, 5);
const SENDERS = 8;
const RECEIVERS = 4;
const PER_SENDER = Math.ceil(SENDS / SENDERS);

let cluster: FaultCluster;
const secrets = new Set<string>();

beforeAll(async () => {
  cluster = await FaultCluster.start();
});
afterAll(async () => {
  await cluster?.destroy();
});

describe('relays killed with SIGKILL during sends', () => {
  it(
    `loses no accepted message and invents none across at least ${SENDS} sends and ${MIN_KILLS} kills`,
    async () => {
      const random = faultRandom('relay kills');
      const ledger = new DeliveryLedger(randomBytes(4).toString('hex'));
      const senders = await Promise.all(
        Array.from({ length: SENDERS }, (_, i) => TestDevice.register(cluster.url(i % 3))),
      );
      const receivers = await Promise.all(
        Array.from({ length: RECEIVERS }, async (_, i) => {
          const device = await TestDevice.register(cluster.url(i % 3));
          return new FaultReceiver(`r${i}`, device, cluster, random, ledger);
        }),
      );
      for (const device of [...senders, ...receivers.map((r) => r.device)]) {
        secrets.add(device.accountId);
      }
      receivers.forEach((receiver) => receiver.start());

      // Each sender sends its share in order, one at a time, to receivers in turn.
      let done = false;
      let kills = 0;
      let sent = 0;
      const sending = Promise.all(
        senders.map(async (sender, s) => {
          // At least PER_SENDER each, and on until the schedule has killed MIN_KILLS relays: on a
          // quiet machine 600 sends can finish before the first kill, and would prove nothing.
          for (let n = 0; n < PER_SENDER || kills < MIN_KILLS; n += 1) {
            sent += 1;
            const receiver = receivers[(s + n) % RECEIVERS] as FaultReceiver;
            await sendUntilAccepted(
              sender,
              receiver.device,
              ledger.marker(s, n),
              cluster,
              random,
              ledger,
            );
          }
        }),
      ).finally(() => (done = true));

      // The schedule: every 1-4 s a random relay dies and is started again on its port, and a
      // random receiver goes offline for 1-2 s, so that backlogs build up and are delivered in
      // batches (the order check has something to judge).
      let offlinePeriods = 0;
      const started = Date.now();
      while (!done) {
        await sleep(random.int(1_000, 4_000));
        if (done) break;
        void random.pick(receivers).goOffline(random.int(1_000, 2_000));
        offlinePeriods += 1;
        const victim = random.int(0, cluster.size - 1);
        if (!cluster.isUp(victim)) continue;
        await cluster.kill(victim);
        kills += 1;
        await cluster.restart(victim);
      }
      await sending;
      const sendSeconds = (Date.now() - started) / 1000;

      await expect.poll(() => ledger.lost().length, { timeout: 60_000, interval: 200 }).toBe(0);
      await Promise.all(receivers.map((receiver) => receiver.stop()));
      // What a killed relay acknowledged but had not yet deleted comes once more, and goes.
      for (const receiver of receivers) await receiver.drain();
      await expect.poll(() => queuedEnvelopes(cluster.postgres.url), { timeout: 30_000 }).toBe(0);

      printFigures('relay kills', {
        ...ledger.figures(),
        kills,
        offlinePeriods,
        sendSeconds,
        sendsPerSecond: ledger.accepted.size / sendSeconds,
        outOfOrder: ledger.outOfOrder(),
        seed: random.seed,
      });
      expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
      expect(offlinePeriods).toBeGreaterThan(0);
      expect(sent).toBeGreaterThanOrEqual(PER_SENDER * SENDERS);
      expect(ledger.accepted.size).toBe(sent);
      expect(ledger.lost()).toEqual([]);
      expect(ledger.phantoms()).toEqual([]);
      expect(ledger.outOfOrder()).toBe(0);
    },
    byScale(240_000, 900_000),
  );

  it('leaves no address, token, account id or marker in the logs or the database', async () => {
    await auditPrivacy(cluster, { secrets, markers: ['fault:'] });
  });
});
