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
 * The database goes away under load, three ways: PostgreSQL stopped with `-m immediate` (and
 * started again, crash recovery included), every connection reset by the network, and a
 * partition that silently swallows traffic. The relays must stay up, answer every request with
 * a retryable error (503 UNAVAILABLE) instead of hanging, take traffic again within seconds of
 * the database returning, and lose nothing they accepted.
 */
const FAULTS = ['postgres stopped', 'connections reset', 'partition'] as const;
type Fault = (typeof FAULTS)[number];
const CYCLES = byScale(3, 9);
const SENDERS = 6;
/** Longer than HANG_MS: a request waiting on the silent database would show as a hang. */
const LONG_PARTITION_MS = 35_000;
/** The longest a relay may take to store a message again once the database is back. */
const RECOVERY_LIMIT_S = 15;

let cluster: FaultCluster;
const secrets = new Set<string>();

beforeAll(async () => {
  cluster = await FaultCluster.start();
});
afterAll(async () => {
  await cluster?.destroy();
});

const inject = async (fault: Fault): Promise<void> => {
  if (fault === 'postgres stopped') await cluster.postgres.stopImmediately();
  else cluster.proxy.cutOff(fault === 'connections reset' ? 'reset' : 'blackhole');
};

const heal = async (fault: Fault): Promise<void> => {
  if (fault === 'postgres stopped') {
    await cluster.postgres.start();
    cluster.proxy.setUpstream(cluster.postgres.port);
  } else {
    cluster.proxy.restore();
  }
};

describe('the database stopped, reset and partitioned under load', () => {
  it(`relays stay up, refuse with 503 instead of hanging, recover, and lose nothing (${CYCLES} faults)`, async () => {
    const random = faultRandom('database faults');
    const ledger = new DeliveryLedger(randomBytes(4).toString('hex'));
    const senders = await Promise.all(
      Array.from({ length: SENDERS }, (_, i) => TestDevice.register(cluster.url(i % 3))),
    );
    const receivers = await Promise.all(
      Array.from({ length: 3 }, async (_, i) => {
        const device = await TestDevice.register(cluster.url(i));
        return new FaultReceiver(`r${i}`, device, cluster, random, ledger);
      }),
    );
    const probe = await TestDevice.register(cluster.url(0));
    for (const device of [...senders, probe, ...receivers.map((r) => r.device)]) {
      secrets.add(device.accountId);
    }
    const firstProcesses = [0, 1, 2].map((i) => cluster.relay(i)?.child.pid);
    receivers.forEach((receiver) => receiver.start());

    let stopping = false;
    let sent = 0;
    const load = Promise.all(
      senders.map(async (sender, s) => {
        for (let n = 0; !stopping; n += 1) {
          const receiver = receivers[n % receivers.length] as FaultReceiver;
          await sendUntilAccepted(
            sender,
            receiver.device,
            ledger.marker(s, n),
            cluster,
            random,
            ledger,
          );
          sent += 1;
        }
      }),
    );

    // Every kind of fault at least once, in a seeded order, then seeded picks.
    const schedule: Fault[] = [...FAULTS].sort(() => random.next() - 0.5);
    while (schedule.length < CYCLES) schedule.push(random.pick(FAULTS));
    const recoveries: number[] = [];
    let probeCount = 0;
    let longPartitionDone = false;
    for (const fault of schedule) {
      await sleep(random.int(1_000, 3_000));
      await inject(fault);
      // A partition lasts longer than the relay's request timeout once: nothing may wait on a
      // connection that will never answer.
      await sleep(
        fault === 'partition' && !longPartitionDone ? LONG_PARTITION_MS : random.int(2_000, 6_000),
      );
      if (fault === 'partition') longPartitionDone = true;
      await heal(fault);
      const healedAt = Date.now();
      // Recovered: every relay stores a message again.
      for (let relay = 0; relay < cluster.size; relay += 1) {
        const marker = ledger.marker(99, probeCount++);
        ledger.attempted.add(marker);
        for (;;) {
          probe.baseUrl = cluster.url(relay);
          const answer = await probe
            .send(receivers[0]!.device.accountId, [receivers[0]!.device.address()], marker)
            .catch(() => undefined);
          if (answer?.status === 200) break;
          if (answer?.status === 401) await probe.authenticate().catch(() => undefined);
          if (Date.now() - healedAt > 60_000) {
            const logs = cluster.relay(relay)?.logs.slice(-15).join('\n');
            throw new Error(
              `relay ${relay} never recovered from ${fault}: ${answer?.status} ${JSON.stringify(answer?.body)}\n${logs}`,
            );
          }
          await sleep(100);
        }
        ledger.accepted.add(marker);
      }
      recoveries.push((Date.now() - healedAt) / 1000);
    }
    stopping = true;
    await load;

    await expect.poll(() => ledger.lost().length, { timeout: 60_000, interval: 200 }).toBe(0);
    await Promise.all(receivers.map((receiver) => receiver.stop()));
    for (const receiver of receivers) await receiver.drain();
    await expect.poll(() => queuedEnvelopes(cluster.postgres.url), { timeout: 30_000 }).toBe(0);

    const retryable = [...ledger.refusals.keys()].every((status) => status === 503);
    printFigures('database faults', {
      ...ledger.figures(),
      faults: schedule.join(','),
      recoverySecondsMax: Math.max(...recoveries),
      recoverySeconds: recoveries.map((r) => r.toFixed(1)).join(','),
      seed: random.seed,
    });
    // The same relay processes throughout: none crashed.
    expect([0, 1, 2].map((i) => cluster.relay(i)?.child.pid)).toEqual(firstProcesses);
    expect([0, 1, 2].every((i) => cluster.isUp(i))).toBe(true);
    expect(sent).toBeGreaterThan(0);
    expect(ledger.refusals.size).toBeGreaterThan(0);
    expect({ hangs: ledger.hangs, retryable }).toEqual({ hangs: 0, retryable: true });
    expect(Math.max(...recoveries)).toBeLessThan(RECOVERY_LIMIT_S);
    expect(ledger.lost()).toEqual([]);
    expect(ledger.phantoms()).toEqual([]);
  });

  it('leaves no address, token, account id or marker in the logs or the database', async () => {
    await auditPrivacy(cluster, { secrets, markers: ['fault:'] });
  });
});
