import { randomBytes } from 'node:crypto';
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { http, TestDevice, TestSocket } from '../support/client.ts';
import { VARIABLES } from '../../src/config.ts';
import { FaultCluster } from '../support/fault-cluster.ts';
import { byScale, faultRandom, MIB, printFigures, sleep } from '../support/fault-schedule.ts';
import { DeliveryLedger, FaultReceiver, queuedEnvelopes } from '../support/fault-traffic.ts';
import { auditPrivacy } from '../support/privacy-audit.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

/**
 * A relay stopped by its orchestrator under load (SIGTERM), a consumer that stops acknowledging
 * with 10,000 envelopes queued, and a peer that vanishes without closing its socket.
 */
const ACK_TIMEOUT_MS = 5_000;
/** Above ACK_TIMEOUT_MS: a consumer that sends nothing is cut off as slow first. */
const IDLE_TIMEOUT_MS = 12_000;
const QUEUED = 10_000;

let cluster: FaultCluster;
const secrets = new Set<string>();

beforeAll(async () => {
  cluster = await FaultCluster.start({
    env: { WS_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS), WS_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) },
  });
});
afterAll(async () => {
  await cluster?.destroy();
});

const register = async (relay: number): Promise<TestDevice> => {
  const device = await TestDevice.register(cluster.url(relay));
  secrets.add(device.accountId);
  return device;
};

describe('SIGTERM under load', () => {
  it('closes sockets with 1001, refuses new connections, finishes in-flight sends, exits 0 within 10 s, loses nothing', async () => {
    const random = faultRandom('sigterm');
    const ledger = new DeliveryLedger(randomBytes(4).toString('hex'));
    const watcher = await register(0);
    const watcherSocket = await TestSocket.connect(cluster.wsUrl(0), watcher);
    const receivers = await Promise.all(
      [1, 2].map(
        async (relay) =>
          new FaultReceiver(`r${relay}`, await register(relay), cluster, random, ledger),
      ),
    );
    receivers.forEach((receiver) => receiver.start());
    const senders = await Promise.all(Array.from({ length: 8 }, () => register(0)));

    // Senders hammer relay 0 until it is gone; every answer is recorded.
    let terminatedAt = 0;
    let acceptedAfterSignal = 0;
    const sending = senders.map(async (sender, s) => {
      for (let n = 0; cluster.isUp(0) || terminatedAt === 0; n += 1) {
        const marker = ledger.marker(s, n);
        const receiver = receivers[n % receivers.length] as FaultReceiver;
        ledger.attempted.add(marker);
        const answer = await sender
          .send(receiver.device.accountId, [receiver.device.address()], marker)
          .catch(() => undefined);
        if (answer?.status === 200) {
          ledger.accepted.add(marker);
          if (terminatedAt > 0) acceptedAfterSignal += 1;
        } else {
          ledger.refused(answer?.status ?? 0);
          if (terminatedAt > 0) break;
        }
      }
    });
    await sleep(2_000);
    const relay = cluster.relay(0);
    terminatedAt = Date.now();
    const exit = cluster.terminate(0);
    await expect
      .poll(() => relay?.logs.some((line) => line.includes('"msg":"stopping"')))
      .toBe(true);
    // New connections: refused (or, on a connection kept alive, 503).
    const late = await http(cluster.url(0), 'GET', '/health').catch(() => ({ status: 0 }));
    const lateSocket = await new Promise<string>((resolve) => {
      const ws = new WebSocket(cluster.wsUrl(0));
      ws.once('open', () => resolve('opened'));
      ws.once('error', () => resolve('refused'));
      ws.once('unexpected-response', () => resolve('refused'));
    });
    const code = await exit;
    const exitSeconds = (Date.now() - terminatedAt) / 1000;
    const closedWith = await watcherSocket.closed;
    await Promise.all(sending);

    await cluster.restart(0);
    await expect.poll(() => ledger.lost().length, { timeout: 60_000, interval: 200 }).toBe(0);
    await Promise.all(receivers.map((receiver) => receiver.stop()));
    for (const receiver of receivers) await receiver.drain();

    printFigures('sigterm', {
      ...ledger.figures(),
      acceptedAfterSignal,
      exitCode: String(code),
      exitSeconds,
      closeCode: closedWith,
      lateRequest: late.status,
      lateSocket,
    });
    expect({ code, closedWith, lateSocket }).toEqual({
      code: 0,
      closedWith: CLOSE_CODES.GOING_AWAY,
      lateSocket: 'refused',
    });
    expect([0, 503]).toContain(late.status);
    expect(exitSeconds).toBeLessThan(10);
    expect(ledger.accepted.size).toBeGreaterThan(0);
    expect(ledger.lost()).toEqual([]);
    expect(ledger.phantoms()).toEqual([]);
  });
});

describe('floods', () => {
  it(
    `a consumer that stops acknowledging ${QUEUED} queued envelopes is cut off; memory stays bounded; all arrive later`,
    async () => {
      const sender = await register(1);
      const slow = await register(1);
      const direct = new pg.Client({ connectionString: cluster.postgres.url });
      await direct.connect();
      try {
        // All but one stored the way the relay stores them (its own counter), in one statement; the
        // last through the relay, which must find the queue at its cap after it.
        await direct.query(
          `WITH advanced AS (
           UPDATE devices SET queue_seq = queue_seq + $3
           WHERE account_id = $1 AND device_id = $2 RETURNING queue_seq - $3 AS base
         )
         INSERT INTO envelopes (seq, id, account_id, device_id, type, content, urgent, stored_hour, expires_at)
         SELECT base + g, gen_random_uuid(), $1, $2, 1, convert_to('flood:' || g, 'UTF8'), false,
                date_trunc('hour', now()), date_trunc('hour', now()) + interval '30 days'
         FROM advanced, generate_series(1, $3) AS g`,
          [slow.accountId, slow.deviceId, QUEUED - 1],
        );
      } finally {
        await direct.end();
      }
      expect((await sender.send(slow.accountId, [slow.address()], 'flood:last')).status).toBe(200);
      expect((await sender.send(slow.accountId, [slow.address()], 'flood:over')).status).toBe(429);
      const rssBefore = cluster.rss(1);

      // Never acknowledges: gets a window's worth, then 4429 once the oldest waited ACK_TIMEOUT_MS.
      const stubborn = await TestSocket.connect(cluster.wsUrl(1), slow, null);
      expect(await stubborn.closed).toBe(CLOSE_CODES.SLOW_CONSUMER);
      const pushedToStubborn = stubborn.envelopes().length;
      // Never even reads: its TCP window fills; the relay's window keeps the relay's memory flat.
      const deaf = await TestSocket.connect(cluster.wsUrl(1), slow, null);
      (deaf.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      await sleep(ACK_TIMEOUT_MS * 2);
      const rssGrowth = cluster.rss(1) - rssBefore;
      deaf.ws.terminate();

      // A reader that acknowledges everything, reconnecting if the relay cuts it off (on a busy
      // machine even a willing reader can fall ACK_TIMEOUT_MS behind), until one connection reads
      // to the end of the queue. Not until it has seen every envelope: the acknowledgements of a
      // connection that was cut off came too late, so those envelopes are still queued and come
      // again (a run at load 20 stopped at "all seen" with 4 left in the queue).
      const started = Date.now();
      const received = new Set<string>();
      let readerConnections = 0;
      let readToTheEnd = false;
      /** Why the relay closed each reader it cut off. */
      const cutOff: string[] = [];
      while (!readToTheEnd && Date.now() - started < 240_000) {
        const reader = await TestSocket.connect(cluster.wsUrl(1), slow);
        readerConnections += 1;
        await reader
          .until(
            () =>
              reader.closeCode !== undefined ||
              reader.requests.some((r) => r.verb === 'queue.empty'),
            240_000,
            'the end of the queue',
          )
          .catch(() => undefined);
        reader.texts().forEach((text) => received.add(text));
        readToTheEnd = reader.requests.some((r) => r.verb === 'queue.empty');
        if (reader.closeCode !== undefined)
          cutOff.push(`${reader.closeCode} ${reader.closeReason}`);
        if (reader.closeCode === undefined) await reader.close();
      }
      const drainSeconds = (Date.now() - started) / 1000;
      await expect.poll(() => queuedEnvelopes(cluster.postgres.url), { timeout: 30_000 }).toBe(0);

      printFigures('slow consumer', {
        queued: QUEUED,
        pushedBeforeCutOff: pushedToStubborn,
        delivered: received.size,
        readerConnections,
        cutOff: cutOff.length,
        rssGrowthMiB: rssGrowth / MIB,
        drainSeconds,
        drainPerSecond: QUEUED / drainSeconds,
      });
      expect(pushedToStubborn).toBeLessThanOrEqual(Number(VARIABLES.WS_WINDOW.default));
      expect(received.size).toBe(QUEUED);
      // Acknowledgements are not a flood: a reader answering as fast as envelopes come is never
      // cut off for its frame rate (it was, every ~416 envelopes, before they were refunded).
      expect(cutOff.filter((reason) => reason.includes('too many frames'))).toEqual([]);
      expect(rssGrowth).toBeLessThan(50 * MIB);
    },
    byScale(400_000, 400_000),
  );

  it('a peer that vanishes without closing (network gone) is dropped after the idle timeout', async () => {
    const gauge = async (): Promise<number> => {
      const metrics = await http(cluster.url(2), 'GET', '/metrics');
      return Number(/^privcomm_ws_connections (\d+)/m.exec(String(metrics.body))?.[1]);
    };
    const before = await gauge();
    const relayPort = Number(new URL(cluster.url(2)).port);
    const network = await TcpProxy.start(relayPort);
    try {
      const ghost = await register(2);
      const socket = await TestSocket.connect(`ws://127.0.0.1:${network.port}/v1/websocket`, ghost);
      expect(await gauge()).toBe(before + 1);
      const vanishedAt = Date.now();
      network.cutOff('blackhole');
      await expect.poll(gauge, { timeout: IDLE_TIMEOUT_MS + 10_000, interval: 250 }).toBe(before);
      printFigures('dead peer', {
        droppedAfterSeconds: (Date.now() - vanishedAt) / 1000,
        idleTimeoutSeconds: IDLE_TIMEOUT_MS / 1000,
      });
      socket.ws.terminate();
    } finally {
      await network.close();
    }
  });

  it('leaves no address, token, account id or marker in the logs or the database', async () => {
    await auditPrivacy(cluster, { secrets, markers: ['fault:', 'flood:'] });
  });
});
