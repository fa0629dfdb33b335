import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDevice } from '../support/client.ts';
import { FaultCluster } from '../support/fault-cluster.ts';
import { faultRandom, MIB, printFigures, report, sleep } from '../support/fault-schedule.ts';
import {
  DeliveryLedger,
  FaultReceiver,
  queuedEnvelopes,
  queuedMarkers,
} from '../support/fault-traffic.ts';
import { auditPrivacy } from '../support/privacy-audit.ts';

/**
 * PostgreSQL's disk fills up: its data directory is a small tmpfs this test mounts (and removes),
 * filled by a file until a few MiB are left, while the recipient stays connected. Sends must be
 * refused with 503, nothing accepted may be lost, and sends must succeed again once the space is
 * back. Both forms run it (it takes under a minute); it needs root for the mount.
 *
 * What PostgreSQL does here (seen in its log): the commit that needs a new write-ahead log
 * segment PANICs, crash recovery replays the log, and its closing checkpoint fails for want of
 * space, so the postmaster exits. It stays down until something starts it again, as systemd's
 * `Restart=` or a container's restart policy would: the test plays that supervisor once the space
 * is back.
 */
const ROOT = process.getuid?.() === 0;
const MOUNT_SIZE = '160m';
const LEFT_FREE = 6 * MIB;
const CONTENT_BYTES = 32 * 1024;
/** Sends after the first one accepted once space is back: service is steady, not a fluke. */
const SENDS_AFTER_RECOVERY = 20;

let mount: string;
let cluster: FaultCluster | undefined;
const secrets = new Set<string>();

const freeBytes = (dir: string): number => {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
};

beforeAll(async () => {
  if (!ROOT) {
    report('[faults] disk full: NOT RUN (mounting a tmpfs needs root)');
    return;
  }
  mount = mkdtempSync(path.join(tmpdir(), 'privcomm-diskfull-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${MOUNT_SIZE},mode=0711`, 'tmpfs', mount]);
  // Store first: this test is about writes meeting a full disk. Delivered first, a connected
  // recipient's acknowledgements would take every send without the disk (accepted, and durable on
  // the device: deliver-first.integration.test.ts), and the round would never see 503s.
  cluster = await FaultCluster.start({
    relays: 1,
    dataDir: mount,
    env: { WS_DIRECT_WINDOW_MS: '0' },
  });
});
afterAll(async () => {
  if (!ROOT) return;
  await cluster?.destroy(false);
  execFileSync('umount', [mount]);
  rmSync(mount, { recursive: true, force: true });
});

describe.skipIf(!ROOT)('the database disk full', () => {
  it('refuses sends with 503 while full, loses nothing accepted, and serves again once space returns', async () => {
    const relay = cluster as FaultCluster;
    const random = faultRandom('disk full');
    const ledger = new DeliveryLedger(randomBytes(4).toString('hex'));
    const sender = await TestDevice.register(relay.url(0));
    const recipient = new FaultReceiver(
      'r0',
      await TestDevice.register(relay.url(0)),
      relay,
      random,
      ledger,
    );
    secrets.add(sender.accountId).add(recipient.device.accountId);

    let n = 0;
    /** One attempt, no retry: what the relay answers is the point. */
    const send = async (): Promise<number> => {
      const marker = ledger.marker(0, n++);
      ledger.attempted.add(marker);
      const content = Buffer.concat([Buffer.from(`${marker}|`), randomBytes(CONTENT_BYTES)]);
      const answer = await sender
        .send(recipient.device.accountId, [recipient.device.address()], content)
        .catch(() => undefined);
      const status = answer?.status ?? 0;
      if (status === 200) ledger.accepted.add(marker);
      else ledger.refused(status);
      return status;
    };
    const statusesWhileFull = new Set<number>();
    /**
     * Fills the disk until ten sends in a row are refused, frees it, starts PostgreSQL again if
     * it stopped, and sends until one is accepted, then a few more.
     */
    const round = async (): Promise<Record<string, number | string>> => {
      const filler = path.join(mount, 'filler');
      writeFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(mount) - LEFT_FREE)));
      const acceptedBefore = ledger.accepted.size;
      const refusalsBefore = new Map(ledger.refusals);
      let consecutiveRefusals = 0;
      while (consecutiveRefusals < 10 && n < 4_000) {
        consecutiveRefusals = (await send()) === 200 ? 0 : consecutiveRefusals + 1;
      }
      for (const [status, count] of ledger.refusals) {
        if (count > (refusalsBefore.get(status) ?? 0)) statusesWhileFull.add(status);
      }
      const acceptedWhileFilling = ledger.accepted.size - acceptedBefore;
      const relayUp = relay.isUp(0);

      rmSync(filler);
      const sentWhileFull = n;
      const freedAt = Date.now();
      let postgresExited = false;
      // The supervisor's part, for as long as sends fail: a postmaster that has exited (its
      // crash recovery's checkpoint found no room, possibly just after the space came back) is
      // started again, and its crash recovery now has room for that checkpoint.
      const supervise = async (): Promise<void> => {
        if (relay.postgres.running()) return;
        postgresExited = true;
        await relay.postgres.stop().catch(() => undefined);
        await relay.postgres.start();
        relay.proxy.setUpstream(relay.postgres.port);
      };
      await supervise();
      while ((await send()) !== 200) {
        if (Date.now() - freedAt > 60_000)
          throw new Error('no send succeeded after space returned');
        await sleep(200);
        await supervise();
      }
      const recoverySeconds = (Date.now() - freedAt) / 1000;
      const refusedAfterSpace = n - sentWhileFull - 1;
      for (let i = 0; i < SENDS_AFTER_RECOVERY; i += 1) expect(await send()).toBe(200);
      return {
        acceptedWhileFilling,
        relayUp: String(relayUp),
        postgresExited: String(postgresExited),
        recoverySeconds: Number(recoverySeconds.toFixed(2)),
        refusedAfterSpace,
      };
    };

    // Round one with the recipient offline: its queue grows with the rest. Round two with it
    // connected: it acknowledges while the database refuses and dies.
    const offline = await round();
    recipient.start();
    const online = await round();

    // The recipient (reconnecting whenever its socket closed) gets every accepted message; its
    // acknowledgements that met a refusing or dead database are deleted later. Waited for here,
    // judged below, after the figures are printed.
    await expect
      .poll(() => ledger.lost().length, { timeout: 120_000, interval: 500 })
      .toBe(0)
      .catch(() => undefined);
    await expect
      .poll(() => queuedEnvelopes(relay.postgres.url), { timeout: 90_000, interval: 500 })
      .toBe(0)
      .catch(() => undefined);
    const stillQueued = await queuedMarkers(relay.postgres.url);
    await recipient.stop();
    const lost = ledger.lost();
    const describeRound = (figures: Record<string, number | string>): string =>
      Object.entries(figures)
        .map(([name, value]) => `${name}:${value}`)
        .join('/');
    printFigures('disk full', {
      ...ledger.figures(),
      // Accepted, not delivered, but still in the queue: a delivery fault, not a lost message.
      lostButQueued: lost.filter((marker) => stillQueued.includes(marker)).length,
      queuedAtEnd: stillQueued.length,
      connections: recipient.connections,
      offlineRound: describeRound(offline),
      onlineRound: describeRound(online),
      seed: random.seed,
    });
    expect(offline.acceptedWhileFilling).toBeGreaterThan(0);
    expect(online.acceptedWhileFilling).toBeGreaterThan(0);
    expect([...statusesWhileFull]).toEqual([503]);
    expect([offline.relayUp, online.relayUp, String(relay.isUp(0))]).toEqual([
      'true',
      'true',
      'true',
    ]);
    expect(lost).toEqual([]);
    expect(ledger.phantoms()).toEqual([]);
    expect(ledger.outOfOrder()).toBe(0);
    expect(stillQueued).toEqual([]);
  });

  it('leaves no address, token, account id or marker in the logs or the database', async () => {
    await auditPrivacy(cluster as FaultCluster, { secrets, markers: ['fault:'] });
  });
});
