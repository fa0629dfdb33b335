import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';
import { RelayError } from '../src/errors.ts';
import {
  challengeKey,
  NONCE_BYTES,
  openChallenge,
  sealChallenge,
} from '../src/services/challenges.ts';
import { DeviceTokens } from '../src/services/tokens.ts';

/**
 * The relay's own parsers of client input that the wire schemas do not cover: login nonces and
 * device tokens. Property: arbitrary input gives a value or the documented refusal, never a
 * throw of another kind; what the relay made itself reads back. (Frames and bodies:
 * bad-input.integration.test.ts; wire schemas: packages/wire/test/wire.test.ts; the client's
 * parsers: packages/client/test/incoming.test.ts and content.test.ts.)
 */
const secret = randomBytes(32);
const key = challengeKey(secret);
const device = (): { accountId: AccountId; deviceId: DeviceId } => {
  const accountId = randomUUID();
  const deviceId = 1;
  if (!isAccountId(accountId) || !isDeviceId(deviceId)) throw new Error('bad fixture');
  return { accountId, deviceId };
};

describe('login nonces (property)', () => {
  it('arbitrary bytes open to nothing, never a throw', () => {
    const { accountId, deviceId } = device();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 80 }),
          fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES }),
        ),
        fc.integer({ min: 0, max: 2 ** 32 }),
        (bytes, now) => {
          expect(openChallenge(key, accountId, deviceId, Buffer.from(bytes), now)).toBeUndefined();
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a sealed nonce opens for its device before its expiry, and for no other device or time', () => {
    const own = device();
    const other = device();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 - 1 }), fc.nat(1000), (expiry, before) => {
        const nonce = sealChallenge(key, own.accountId, own.deviceId, expiry);
        const now = Math.max(0, expiry - 1 - before);
        expect(openChallenge(key, own.accountId, own.deviceId, nonce, now)).toBe(expiry);
        expect(openChallenge(key, own.accountId, own.deviceId, nonce, expiry)).toBeUndefined();
        expect(openChallenge(key, other.accountId, other.deviceId, nonce, now)).toBeUndefined();
        const flipped = Buffer.from(nonce);
        flipped[before % flipped.length]! ^= 1;
        expect(openChallenge(key, own.accountId, own.deviceId, flipped, now)).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });
});

describe('device tokens (property)', () => {
  const tokens = new DeviceTokens(secret);
  const refusedAsUnauthenticated = async (token: string): Promise<void> => {
    const error = await tokens.verify(token).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RelayError);
    expect((error as RelayError).code).toBe('UNAUTHENTICATED');
  };

  it('arbitrary strings and JWT-shaped junk are refused with UNAUTHENTICATED, never another error', async () => {
    const segment = fc.oneof(
      fc.base64String(),
      fc.string(),
      fc.json().map((json) => Buffer.from(json).toString('base64url')),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.tuple(segment, segment, segment).map((parts) => parts.join('.')),
        ),
        refusedAsUnauthenticated,
      ),
      { numRuns: 1000 },
    );
  });

  it('a token it issued reads back; any changed character makes it refused', async () => {
    const { accountId, deviceId } = device();
    const { token } = await tokens.issue({ accountId, deviceId });
    expect(await tokens.verify(token)).toEqual({ accountId, deviceId });
    await fc.assert(
      // Not the last character: its low bits carry no signature bits in base64url.
      fc.asyncProperty(
        fc.nat(token.length - 2),
        fc.constantFrom('A', 'b', '-', '_', '.'),
        async (at, c) => {
          fc.pre(token[at] !== c);
          await refusedAsUnauthenticated(token.slice(0, at) + c + token.slice(at + 1));
        },
      ),
      { numRuns: 300 },
    );
  });
});
