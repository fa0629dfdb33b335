import { createPublicKey, randomBytes, verify, webcrypto } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import {
  authChallengeMessage,
  isAccountId,
  isDeviceId,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import { RelayError } from '../errors.ts';

/**
 * Device tokens: short-lived JWTs the relay issues after a device proves possession of its
 * Ed25519 authentication key. Exactly one algorithm is accepted, and issuer, audience, type,
 * age and expiry are all checked; a valid token still only counts while its device exists
 * (checked by the caller on every use).
 */
export const TOKEN_LIFETIME_SECONDS = 5 * 60;
export const CHALLENGE_LIFETIME_SECONDS = 60;
const ISSUER = 'privcomm-relay';
const AUDIENCE = 'privcomm-device';
const TYPE = 'privcomm-device+jwt';
const ALGORITHM = 'HS256';

const importHmacKey = (secret: Uint8Array): Promise<webcrypto.CryptoKey> =>
  webcrypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
    'verify',
  ]);

export interface AuthenticatedDevice {
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
}

/**
 * Signs with one key; verifies with it and with `verifySecrets` (JWT_VERIFY_SECRETS), so that
 * instances can switch keys one by one during a rotation: a token one of them signed with the old
 * or the new key is accepted by every other (docs/operations.md, "rotating JWT_SECRET").
 */
export class DeviceTokens {
  /**
   * The HMAC keys, imported into WebCrypto once. Handing jose the raw secret made it import the
   * key again for every token it signed or checked: 14 % of the relay's CPU under load. The keys
   * are bound to HS256 and to sign/verify, so jose's checks of them are as strict as before.
   */
  private readonly signingKey: Promise<webcrypto.CryptoKey>;
  private readonly verifyingKeys: readonly Promise<webcrypto.CryptoKey>[];

  constructor(secret: Uint8Array, verifySecrets: readonly Uint8Array[] = []) {
    this.signingKey = importHmacKey(secret);
    this.verifyingKeys = [this.signingKey, ...verifySecrets.map(importHmacKey)];
  }

  async issue(device: AuthenticatedDevice): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: ALGORITHM, typ: TYPE })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(`${device.accountId}.${device.deviceId}`)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + TOKEN_LIFETIME_SECONDS)
      .setJti(randomBytes(16).toString('base64url'))
      .sign(await this.signingKey);
    return { token, expiresAt: new Date((issuedAt + TOKEN_LIFETIME_SECONDS) * 1000) };
  }

  /** The device a token names, or UNAUTHENTICATED for anything not issued by us and current. */
  async verify(token: string): Promise<AuthenticatedDevice> {
    let failure: unknown;
    for (const key of this.verifyingKeys) {
      try {
        return await this.verifyWith(await key, token);
      } catch (error) {
        failure = error;
      }
    }
    throw failure;
  }

  private async verifyWith(key: webcrypto.CryptoKey, token: string): Promise<AuthenticatedDevice> {
    let subject: string | undefined;
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: [ALGORITHM],
        issuer: ISSUER,
        audience: AUDIENCE,
        typ: TYPE,
        clockTolerance: 30,
        maxTokenAge: TOKEN_LIFETIME_SECONDS,
        requiredClaims: ['exp', 'iat', 'sub', 'jti'],
      });
      subject = payload.sub;
    } catch {
      throw new RelayError('UNAUTHENTICATED');
    }
    const match = /^([0-9a-f-]{36})\.(\d{1,3})$/.exec(subject ?? '');
    const accountId = match?.[1];
    const deviceId = Number(match?.[2]);
    if (!isAccountId(accountId) || !isDeviceId(deviceId)) throw new RelayError('UNAUTHENTICATED');
    return { accountId, deviceId };
  }
}

/** Checks a device's Ed25519 signature over the challenge for (account, device, nonce). */
export const verifyChallengeSignature = (
  authKey: Uint8Array,
  device: AuthenticatedDevice,
  nonce: Uint8Array,
  signature: Uint8Array,
): boolean => {
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(authKey).toString('base64url') },
      format: 'jwk',
    });
    return verify(
      null,
      authChallengeMessage(device.accountId, device.deviceId, nonce),
      key,
      signature,
    );
  } catch {
    return false;
  }
};
