import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TestDevice, TestSocket } from './support/client.ts';
import { spawnRelay, type RelayProcess } from './support/relay.ts';

/**
 * A relay must come back by itself after a power cut, an OOM kill or a crash loop under a
 * supervisor. `npm run test:crash-loop` kills 20 times; the normal suite kills 3 times.
 */
const KILLS = Number(process.env.PRIVCOMM_CRASH_KILLS ?? '3');

const postmasterPid = (dataDir: string): number =>
  Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);

const exited = (relay: RelayProcess): Promise<unknown> =>
  relay.child.exitCode !== null || relay.child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => relay.child.once('exit', resolve));

describe('a relay killed again and again', () => {
  it(
    `comes back after ${KILLS} SIGKILLs of relay and database, losing no accepted message`,
    async () => {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-crash-'));
      const embedded = { DATABASE_URL: '', JWT_SECRET: '', DATA_DIR: dataDir };
      let relay = await spawnRelay('', embedded);
      try {
        const alice = await TestDevice.register(relay.url);
        const bob = await TestDevice.register(relay.url);
        const accepted: string[] = [];
        for (let round = 0; round < KILLS; round += 1) {
          for (let i = 0; i < 3; i += 1) {
            const text = `round ${round} message ${i}`;
            const sent = await alice.send(bob.accountId, [bob.address()], text);
            expect(sent.status).toBe(200);
            accepted.push(text);
          }
          const database = postmasterPid(dataDir);
          relay.child.kill('SIGKILL');
          process.kill(database, 'SIGKILL');
          await exited(relay);
          // At once: the dying postmaster, its backends and its lock file are all still there.
          relay = await spawnRelay('', embedded);
          alice.baseUrl = relay.url;
          bob.baseUrl = relay.url;
        }
        await bob.authenticate();
        const socket = await TestSocket.connect(relay.wsUrl, bob);
        await socket.until(
          () => socket.envelopes().length >= accepted.length,
          30_000,
          'every message',
        );
        expect(new Set(socket.texts())).toEqual(new Set(accepted));
        await socket.close();
      } finally {
        expect(await relay.stop()).toBe(0);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
    60_000 + KILLS * 15_000,
  );
});
