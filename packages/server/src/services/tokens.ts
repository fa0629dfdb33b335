import {
  createHmac,
  createPublicKey,
  createSecretKey,
  randomBytes,
  timingSafeEqual,
  verify,
  type KeyObject,
} from 'node:crypto';
import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';
import { RelayError } from '../errors.ts';

/**
 * Device tokens: short-lived JWTs the relay issues after a device proves possession of its
 * Ed25519 authentication key. Exactly one header is accepted, and issuer, audience, age and
 * expiry are all checked; a valid token still only counts while its device exists (checked by the
 * caller on every use).
 *
 * Signed and checked here with node:crypto's HMAC rather than a JWT library: the relay only ever
 * reads tokens it issued itself, so one fixed header and one claim set are all it must understand,
 * and jose's WebCrypto jobs cost about 350 µs to issue and 250 µs to check a token on the
 * benchmark VM (10 % of a login's CPU). The tokens are byte for byte what jose made of the same
 * claims, so instances of either version accept each other's tokens during an upgrade.
 */
export const TOKEN_LIFETIME_SECONDS = 5 * 60;
export const CHALLENGE_LIFETIME_SECONDS = 60;
const ISSUER = 'privcomm-relay';
const AUDIENCE = 'privcomm-device';
/** Clock skew allowed between instances, as before (jose's clockTolerance). */
const CLOCK_TOLERANCE_SECONDS = 30;
/** The only header there is; anything else (alg "none", another alg or typ, kid, crit) is refused. */
const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'privcomm-device+jwt' })).toString(
  'base64url',
);
/** Unpadded base64url of a claim set, and of exactly the 32 bytes of an HMAC-SHA256. */
const PAYLOAD_SEGMENT = /^[A-Za-z0-9_-]+$/;
const SIGNATURE_SEGMENT = /^[A-Za-z0-9_-]{43}$/;
const SUBJECT = /^([0-9a-f-]{36})\.(\d{1,3})$/;

export interface AuthenticatedDevice {
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
}

const sign = (key: KeyObject, signingInput: string): string =>
  createHmac('sha256', key).update(signingInput).digest('base64url');

/** Compares the canonical encodings, so a signature with other unused low bits is refused too. */
const signatureMatches = (key: KeyObject, signingInput: string, signature: string): boolean =>
  timingSafeEqual(Buffer.from(sign(key, signingInput)), Buffer.from(signature));

const isNumericDate = (value: unknown): value is number => Number.isSafeInteger(value);

/** The device a verified claim set names if it is current at `now`; undefined otherwise. */
const currentDevice = (claims: unknown, now: number): AuthenticatedDevice | undefined => {
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return undefined;
  const { iss, aud, sub, iat, exp, nbf, jti } = claims as Record<string, unknown>;
  if (iss !== ISSUER || aud !== AUDIENCE || typeof jti !== 'string') return undefined;
  if (!isNumericDate(iat) || !isNumericDate(exp)) return undefined;
  if (exp <= now - CLOCK_TOLERANCE_SECONDS) return undefined;
  // Not issued in the future, and not longer ago than a token lives: both within the tolerance.
  if (iat > now + CLOCK_TOLERANCE_SECONDS) return undefined;
  if (now - iat - CLOCK_TOLERANCE_SECONDS > TOKEN_LIFETIME_SECONDS) return undefined;
  // We never set nbf; were it there, it would be honoured as any JWT library does.
  if (nbf !== undefined && (!isNumericDate(nbf) || nbf > now + CLOCK_TOLERANCE_SECONDS)) {
    return undefined;
  }
  const match = SUBJECT.exec(typeof sub === 'string' ? sub : '');
  const accountId = match?.[1];
  const deviceId = Number(match?.[2]);
  if (!isAccountId(accountId) || !isDeviceId(deviceId)) return undefined;
  return { accountId, deviceId };
};

/**
 * Signs with one key; verifies with it and with `verifySecrets` (JWT_VERIFY_SECRETS), so that
 * instances can switch keys one by one during a rotation: a token one of them signed with the old
 * or the new key is accepted by every other (docs/operations.md, "rotating JWT_SECRET").
 */
export class DeviceTokens {
  private readonly signingKey: KeyObject;
  private readonly verifyingKeys: readonly KeyObject[];

  constructor(secret: Uint8Array, verifySecrets: readonly Uint8Array[] = []) {
    this.signingKey = createSecretKey(secret);
    this.verifyingKeys = [this.signingKey, ...verifySecrets.map((s) => createSecretKey(s))];
  }

  async issue(device: AuthenticatedDevice): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiry = issuedAt + TOKEN_LIFETIME_SECONDS;
    // The claims in jose's order, so that a token is the same bytes either would have made.
    const claims = {
      iss: ISSUER,
      aud: AUDIENCE,
      sub: `${device.accountId}.${device.deviceId}`,
      iat: issuedAt,
      exp: expiry,
      jti: randomBytes(16).toString('base64url'),
    };
    const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const token = `${signingInput}.${sign(this.signingKey, signingInput)}`;
    return { token, expiresAt: new Date(expiry * 1000) };
  }

  /** The device a token names, or UNAUTHENTICATED for anything not issued by us and current. */
  async verify(token: string): Promise<AuthenticatedDevice> {
    const device = this.read(token);
    if (device === undefined) throw new RelayError('UNAUTHENTICATED');
    return device;
  }

  private read(token: string): AuthenticatedDevice | undefined {
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    const [header = '', payload = '', signature = ''] = parts;
    if (header !== HEADER || !PAYLOAD_SEGMENT.test(payload)) return undefined;
    if (!SIGNATURE_SEGMENT.test(signature)) return undefined;
    const signingInput = `${header}.${payload}`;
    if (!this.verifyingKeys.some((key) => signatureMatches(key, signingInput, signature))) {
      return undefined;
    }
    // Parsed only once the signature shows that we wrote it.
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    return currentDevice(claims, Math.floor(Date.now() / 1000));
  }
}

/**
 * Checks a device's Ed25519 signature with its raw 32-byte authentication key over a login
 * message: @privcomm/wire's authChallengeMessage (HTTP) or socketAuthMessage (the socket).
 */
export const verifyLoginSignature = (
  authKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean => {
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(authKey).toString('base64url') },
      format: 'jwk',
    });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
};
