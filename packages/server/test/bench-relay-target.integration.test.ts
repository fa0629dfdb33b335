import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authChallengeMessage, socketAuthMessage } from '@privcomm/wire';
import { createRelayAccounts } from '../bench/lib/relay-accounts.ts';
import { authChallengeBytes, socketAuthBytes } from '../bench/lib/relay-login.ts';
import { RelayTarget, type LoginKind, type SendTransport } from '../bench/lib/relay-target.ts';
import { readHeader, writeHeader } from '../bench/lib/target.ts';
import { MAX_SENDS_IN_FLIGHT } from '../src/ws/device-socket.ts';
import { createTestDatabase } from './support/database.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * The benchmark's load generator logs in and sends without the wire package or the test client
 * (their import cost each load process a second): its login must still be the relay's, checked
 * here against a real relay with accounts made the way the benchmark makes them.
 */

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;
let dir: string;
let accountsFile: string;

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  relay = await startRelay(databaseUrl);
  dir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-target-'));
  accountsFile = path.join(dir, 'accounts.json');
  await createRelayAccounts(databaseUrl, 2, accountsFile);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
  rmSync(dir, { recursive: true, force: true });
});

describe("the benchmark's relay target", () => {
  it('signs the bytes the wire defines for a login challenge and a login on the socket', () => {
    const accountId = randomUUID();
    const nonce = randomBytes(32);
    expect(authChallengeBytes(accountId, 3, nonce)).toEqual(
      Buffer.from(authChallengeMessage(accountId, 3, nonce)),
    );
    expect(socketAuthBytes(accountId, 3, nonce)).toEqual(
      Buffer.from(socketAuthMessage(accountId, 3, nonce)),
    );
  });

  it.each<[SendTransport, LoginKind]>([
    ['websocket', 'socket'],
    ['websocket', 'http'],
    ['websocket-json', 'socket'],
    ['http', 'socket'],
    ['http', 'http'],
  ])(
    'logs two benchmark accounts in and delivers a send between them (%s, login %s)',
    async (transport, login) => {
      const target = new RelayTarget(
        relay.url,
        databaseUrl,
        transport,
        login,
        accountsFile,
        MAX_SENDS_IN_FLIGHT,
      );
      try {
        await target.prepare(2);
        const received: { pair: number; seq: number }[] = [];
        const recipient = await target.connect(1, (payload) => received.push(readHeader(payload)));
        const sender = await target.connect(0, () => {});
        const payload = randomBytes(64);
        writeHeader(payload, 0, 7);
        await sender.send(1, payload);
        await expect.poll(() => received).toEqual([{ pair: 0, seq: 7 }]);
        // Acknowledged by the target: the relay deletes it.
        await expect.poll(() => target.storedCount()).toBe(0);
        await Promise.all([sender.close(), recipient.close()]);
      } finally {
        await target.close();
      }
    },
  );

  it('refuses to run without the relay’s limit on sends in flight', () => {
    expect(
      () =>
        new RelayTarget(relay.url, databaseUrl, 'websocket', 'socket', accountsFile, Number.NaN),
    ).toThrow('maxSendsInFlight is missing');
  });
});
