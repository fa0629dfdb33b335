import { describe, expect, it } from 'vitest';
import type { DeviceId, SendMessagesRequest } from '@privcomm/wire';
import { ClientError, isRetryable } from '../src/errors.ts';
import { RelayApi, type Bundles } from '../src/relay-api.ts';
import { Sender } from '../src/sender.ts';
import type { HttpResponse } from '../src/transport.ts';
import { CapturingLogger, FakeEngine } from './support/fakes.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';

const ALICE = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');
const KEY = 'A'.repeat(44);

const bundle = (deviceIds: DeviceId[]): Bundles => ({
  identityKey: KEY,
  devices: deviceIds.map((deviceId) => ({
    deviceId,
    registrationId: 1,
    signedPreKey: { keyId: 1, publicKey: KEY, signature: KEY },
    kyberPreKey: { keyId: 1, publicKey: KEY, signature: KEY },
    kyberPreKeyIsLastResort: false,
  })),
});

/** A relay that answers sends from a script, one answer per send, and serves bundles. */
const setup = (answers: (HttpResponse<unknown> | Error)[]) => {
  const engine = new FakeEngine({ accountId: ALICE, deviceId: deviceIdOf(1) });
  const logger = new CapturingLogger();
  const sends: SendMessagesRequest[] = [];
  const sleeps: number[] = [];
  const expect_ = new RelayApi(
    {
      relayUrl: 'http://relay.test',
      fetch: () => Promise.reject(new Error()),
      openSocket: () => {
        throw new Error();
      },
    },
    { publicKey: async () => new Uint8Array(32), sign: async () => new Uint8Array(64) },
    () => 0,
  );
  const api = {
    bundles: async (_accountId: string, deviceId: DeviceId | '*') =>
      bundle(deviceId === '*' ? [deviceIdOf(1)] : [deviceId]),
    devices: async () => ({ devices: [] }),
    sendMessages: async (_to: string, request: SendMessagesRequest) => {
      sends.push(request);
      const answer = answers.shift() ?? { status: 200, body: { stored: 1 } };
      if (answer instanceof Error) throw answer;
      return answer;
    },
    expect: expect_.expect.bind(expect_),
  };
  const sender = new Sender(
    { api, engine, sleep: async (ms) => void sleeps.push(ms), logger },
    () => ({ accountId: ALICE, deviceId: deviceIdOf(1) }),
  );
  return { sender, engine, logger, sends, sleeps };
};

const plaintext = new Uint8Array([1, 2, 3]);

describe('sender', () => {
  it('starts sessions on first contact and sends one ciphertext per device', async () => {
    const { sender, sends } = setup([]);
    expect(await sender.send(BOB, plaintext)).toBe(true);
    expect(sends[0]?.messages.map((m) => m.deviceId)).toEqual([1]);
  });

  it('repairs the device set on 409 and 410, then sends again', async () => {
    const { sender, engine, sends } = setup([
      {
        status: 409,
        body: {
          error: { code: 'MISMATCHED_DEVICES', message: '' },
          missingDevices: [2, 3],
          extraDevices: [],
        },
      },
      { status: 410, body: { error: { code: 'STALE_DEVICES', message: '' }, staleDevices: [3] } },
      { status: 409, body: { missingDevices: [], extraDevices: [2] } },
    ]);
    expect(await sender.send(BOB, plaintext)).toBe(true);
    expect(sends.map((s) => s.messages.map((m) => m.deviceId))).toEqual([
      [1],
      [1, 2, 3],
      [1, 2, 3],
      [1, 3],
    ]);
    expect(engine.deleted).toEqual([
      { accountId: BOB, deviceId: deviceIdOf(3) },
      { accountId: BOB, deviceId: deviceIdOf(2) },
    ]);
  });

  it('refuses a malformed 409 body with a logged reason instead of acting on it', async () => {
    for (const body of [
      { missingDevices: ['2'], extraDevices: [] },
      { missingDevices: [0], extraDevices: [] },
      { missingDevices: [2] },
      'oops',
      null,
    ]) {
      const { sender, engine, logger } = setup([{ status: 409, body }]);
      await expect(sender.send(BOB, plaintext)).rejects.toMatchObject({ code: 'NOT_A_RELAY' });
      expect(logger.lines).toEqual([
        { level: 'warn', event: 'send answer refused', reason: 'malformed device list' },
      ]);
      expect(engine.deleted).toEqual([]);
    }
  });

  it('waits out a short 429 (a nonsensical delay counts as 1 s), refuses a long one', async () => {
    const short = setup([{ status: 429, body: { retryAfterSeconds: 'soon' } }]);
    expect(await short.sender.send(BOB, plaintext)).toBe(true);
    expect(short.sleeps).toEqual([1000]);
    const long = setup([{ status: 429, body: { retryAfterSeconds: 3600 } }]);
    await expect(long.sender.send(BOB, plaintext)).rejects.toMatchObject({
      code: 'RELAY_REFUSED',
      relayCode: 'RATE_LIMITED',
    });
  });

  it('retries a relay without its database (503), then leaves the message for the outbox to retry', async () => {
    const down = { status: 503, body: { error: { code: 'UNAVAILABLE', message: 'no database' } } };
    const { sender, sleeps } = setup([down, down, down, down, down, down]);
    const error: unknown = await sender.send(BOB, plaintext).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'RELAY_REFUSED', relayCode: 'UNAVAILABLE' });
    expect(sleeps.length).toBeGreaterThan(0);
    // "Retry with backoff" (docs/protocol.md): the message stays in the outbox, never dropped.
    expect(isRetryable(error as ClientError)).toBe(true);
  });

  it('retries network failures with growing waits, then gives up with RELAY_UNREACHABLE', async () => {
    const offline = () => new ClientError('RELAY_UNREACHABLE', 'offline');
    const { sender, sleeps } = setup([offline(), offline(), offline(), offline(), offline()]);
    await expect(sender.send(BOB, plaintext)).rejects.toMatchObject({ code: 'RELAY_UNREACHABLE' });
    expect(sleeps).toEqual([1000, 2000, 4000, 8000]);
  });
});
