import { describe, expect, it } from 'vitest';
import { parseMultiRecipientAnswer, RelayApi } from '../src/relay-api.ts';
import { accountIdOf } from '../src/testing/ids.ts';

const BOB = accountIdOf('7c1d6e0a-9f3b-4a2e-8d5c-1b0e2f3a4c5d');
const CAROL = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
const error = (code: string) => ({ error: { code, message: 'm' } });

/** The answers to PUT /v1/messages/multi, read into what a group sender acts on. */
describe('parseMultiRecipientAnswer', () => {
  it('reads stored, the per-account device sets, unknown accounts, full queues and rate limits', () => {
    expect(parseMultiRecipientAnswer({ status: 200, body: { stored: 7 } })).toEqual({
      kind: 'stored',
      stored: 7,
    });
    const accounts = [
      { accountId: BOB, missingDevices: [2], extraDevices: [], staleDevices: [] },
      { accountId: CAROL, missingDevices: [], extraDevices: [3], staleDevices: [1] },
    ];
    for (const status of [409, 410] as const) {
      expect(
        parseMultiRecipientAnswer({ status, body: { ...error('MISMATCHED_DEVICES'), accounts } }),
      ).toEqual({ kind: 'mismatched', status, accounts });
    }
    expect(
      parseMultiRecipientAnswer({
        status: 404,
        body: { ...error('ACCOUNT_NOT_FOUND'), unknownAccounts: [BOB] },
      }),
    ).toEqual({ kind: 'unknownAccounts', accountIds: [BOB] });
    expect(
      parseMultiRecipientAnswer({
        status: 429,
        body: { ...error('QUEUE_FULL'), retryAfterSeconds: 600, fullAccounts: [CAROL] },
      }),
    ).toEqual({ kind: 'queueFull', accountIds: [CAROL], retryAfterSeconds: 600 });
    expect(
      parseMultiRecipientAnswer({
        status: 429,
        body: { ...error('RATE_LIMITED'), retryAfterSeconds: 3 },
      }),
    ).toEqual({ kind: 'rateLimited', retryAfterSeconds: 3 });
  });

  it('reads nothing from answers without their documented shape', () => {
    const bad = [
      { status: 200, body: { stored: 'x' } },
      { status: 409, body: { ...error('MISMATCHED_DEVICES'), missingDevices: [2] } },
      {
        status: 409,
        body: {
          ...error('MISMATCHED_DEVICES'),
          accounts: [
            { accountId: 'not-a-uuid', missingDevices: [], extraDevices: [], staleDevices: [] },
          ],
        },
      },
      {
        status: 410,
        body: {
          ...error('STALE_DEVICES'),
          accounts: [{ accountId: BOB, missingDevices: [0], extraDevices: [], staleDevices: [] }],
        },
      },
      { status: 404, body: error('NOT_FOUND') },
      { status: 404, body: { ...error('ACCOUNT_NOT_FOUND'), unknownAccounts: ['bob'] } },
      {
        status: 429,
        body: { ...error('QUEUE_FULL'), retryAfterSeconds: 600, fullAccounts: ['x'] },
      },
      { status: 429, body: error('RATE_LIMITED') },
      { status: 400, body: error('VALIDATION_FAILED') },
    ];
    for (const response of bad) expect(parseMultiRecipientAnswer(response)).toBeUndefined();
  });
});

describe('RelayApi.sendMultiRecipient', () => {
  it('uploads only sealed sender v2 (type 2), the one kind the relay cuts, and asks nothing else', async () => {
    const requests: string[] = [];
    const api = new RelayApi(
      {
        relayUrl: 'http://relay.test',
        fetch: async (url) => {
          requests.push(String(url));
          return new Response('{}', { status: 500 });
        },
        openSocket: () => {
          throw new Error('no socket here');
        },
      },
      { publicKey: async () => new Uint8Array(32), sign: async () => new Uint8Array(64) },
      () => 0,
    );
    const message = { content: new Uint8Array(40), recipients: [] };
    for (const type of [1, 3, 0]) {
      await expect(api.sendMultiRecipient({ ...message, type })).rejects.toThrow(TypeError);
    }
    expect(requests).toEqual([]);
  });
});
