import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { CompactSign, SignJWT, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';
import { RelayError } from '../src/errors.ts';
import { DeviceTokens } from '../src/services/tokens.ts';

/**
 * Device tokens against jose, the library that signed and checked them before: the same tokens in
 * both directions, and every refusal jose made is still made. Where ours is stricter than jose
 * (one exact header, canonical base64url signatures) the test says so.
 */
const NOW = 1_800_000_000;
const secret = randomBytes(32);
const tokens = new DeviceTokens(secret);

const device = (): { accountId: AccountId; deviceId: DeviceId } => {
  const accountId = randomUUID();
  const deviceId = 3;
  if (!isAccountId(accountId) || !isDeviceId(deviceId)) throw new Error('bad fixture');
  return { accountId, deviceId };
};
const { accountId, deviceId } = device();
const sub = `${accountId}.${deviceId}`;

/** What the old services/tokens.ts checked, with jose: the reference for "still refused". */
const joseAccepts = (token: string, key: Uint8Array = secret): Promise<boolean> =>
  jwtVerify(token, key, {
    algorithms: ['HS256'],
    issuer: 'privcomm-relay',
    audience: 'privcomm-device',
    typ: 'privcomm-device+jwt',
    clockTolerance: 30,
    maxTokenAge: 300,
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  }).then(
    () => true,
    () => false,
  );

const refusal = (token: string, by = tokens): Promise<unknown> =>
  by.verify(token).then(
    () => undefined,
    (error: unknown) => error,
  );

const expectRefused = async (token: string, by = tokens): Promise<void> => {
  const error = await refusal(token, by);
  expect(error).toBeInstanceOf(RelayError);
  expect((error as RelayError).code).toBe('UNAUTHENTICATED');
};

const claims = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: 'privcomm-relay',
  aud: 'privcomm-device',
  sub,
  iat: NOW,
  exp: NOW + 300,
  jti: randomBytes(16).toString('base64url'),
  ...overrides,
});

/** Signed by jose with any header and claim set (undefined values drop the claim). */
const joseSigned = (
  payload: Record<string, unknown>,
  header: Record<string, unknown> = { alg: 'HS256', typ: 'privcomm-device+jwt' },
  key: Uint8Array = secret,
): Promise<string> =>
  new CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader(header as { alg: string })
    .sign(key);

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(NOW * 1000);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('device tokens: compatible with the jose tokens before them', () => {
  it('issues exactly the bytes jose made of the same claims, which jose accepts', async () => {
    const { token, expiresAt } = await tokens.issue({ accountId, deviceId });
    expect(expiresAt.getTime()).toBe((NOW + 300) * 1000);
    const [header, payload] = token.split('.');
    expect(JSON.parse(Buffer.from(header ?? '', 'base64url').toString())).toEqual({
      alg: 'HS256',
      typ: 'privcomm-device+jwt',
    });
    const issued = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString());
    expect(issued).toEqual({ ...claims(), jti: issued.jti });
    expect(issued.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // The old issue(), with this token's jti.
    const byJose = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'privcomm-device+jwt' })
      .setIssuer('privcomm-relay')
      .setAudience('privcomm-device')
      .setSubject(sub)
      .setIssuedAt(NOW)
      .setExpirationTime(NOW + 300)
      .setJti(issued.jti)
      .sign(secret);
    expect(token).toBe(byJose);
    expect(await joseAccepts(token)).toBe(true);
    expect(await tokens.verify(byJose)).toEqual({ accountId, deviceId });
  });

  it('every token is new: a fresh jti each time', async () => {
    const first = await tokens.issue({ accountId, deviceId });
    const second = await tokens.issue({ accountId, deviceId });
    expect(first.token).not.toBe(second.token);
  });

  it('rotation: verify secrets are accepted and never sign; an unknown key is refused', async () => {
    const next = randomBytes(32);
    const rotating = new DeviceTokens(next, [secret]);
    expect(await rotating.verify(await joseSigned(claims()))).toEqual({ accountId, deviceId });
    const { token } = await rotating.issue({ accountId, deviceId });
    expect(await joseAccepts(token, next)).toBe(true);
    expect(await joseAccepts(token, secret)).toBe(false);
    await expectRefused(token); // signed with `next`, which `tokens` does not know
    await expectRefused(await joseSigned(claims(), undefined, randomBytes(32)), rotating);
  });
});

describe('device tokens: the clock, 30 s of tolerance', () => {
  const cases: [string, Record<string, unknown>, boolean][] = [
    ['expires 29 s ago', { iat: NOW - 329, exp: NOW - 29 }, true],
    ['expired 30 s ago', { iat: NOW - 300, exp: NOW - 30 }, false],
    ['expired long ago', { iat: NOW - 300, exp: NOW - 3600 }, false],
    ['issued 330 s ago (and not yet expired)', { iat: NOW - 330, exp: NOW + 60 }, true],
    ['issued 331 s ago (and not yet expired)', { iat: NOW - 331, exp: NOW + 60 }, false],
    ['issued 30 s ahead', { iat: NOW + 30, exp: NOW + 330 }, true],
    ['issued 31 s ahead', { iat: NOW + 31, exp: NOW + 331 }, false],
    ['not before 30 s ahead', { nbf: NOW + 30 }, true],
    ['not before 31 s ahead', { nbf: NOW + 31 }, false],
    ['iat a string', { iat: String(NOW) }, false],
    ['exp a string', { exp: String(NOW + 300) }, false],
    ['nbf a string', { nbf: String(NOW) }, false],
  ];
  it.each(cases)('%s %o: accepted %s, as jose decided', async (_, overrides, accepted) => {
    const token = await joseSigned(claims(overrides));
    expect(await joseAccepts(token)).toBe(accepted);
    if (accepted) expect(await tokens.verify(token)).toEqual({ accountId, deviceId });
    else await expectRefused(token);
  });
});

describe('device tokens: refused with UNAUTHENTICATED, as jose refused them', () => {
  const good = (): Promise<string> => joseSigned(claims());
  const cases: [string, () => Promise<string>][] = [
    [
      'a tampered signature',
      async () => {
        const token = await good();
        const at = token.lastIndexOf('.') + 5;
        return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
      },
    ],
    [
      'a tampered claim set under the old signature',
      async () => {
        const [header, , signature] = (await good()).split('.');
        const other = claims({ sub: `${randomUUID()}.1` });
        return `${header}.${b64url(other)}.${signature}`;
      },
    ],
    [
      'alg "none", unsigned',
      async () => `${b64url({ alg: 'none', typ: 'privcomm-device+jwt' })}.${b64url(claims())}.`,
    ],
    [
      'alg "none" with our signature',
      async () => {
        const [, payload, signature] = (await good()).split('.');
        return `${b64url({ alg: 'none', typ: 'privcomm-device+jwt' })}.${payload}.${signature}`;
      },
    ],
    [
      'HS512 with our key',
      () => joseSigned(claims(), { alg: 'HS512', typ: 'privcomm-device+jwt' }),
    ],
    [
      'HS384 with our key',
      () => joseSigned(claims(), { alg: 'HS384', typ: 'privcomm-device+jwt' }),
    ],
    ['another typ', () => joseSigned(claims(), { alg: 'HS256', typ: 'JWT' })],
    ['no typ', () => joseSigned(claims(), { alg: 'HS256' })],
    ['another issuer', () => joseSigned(claims({ iss: 'someone-else' }))],
    ['another audience', () => joseSigned(claims({ aud: 'privcomm-admin' }))],
    ['no iss', () => joseSigned(claims({ iss: undefined }))],
    ['no aud', () => joseSigned(claims({ aud: undefined }))],
    ['no sub', () => joseSigned(claims({ sub: undefined }))],
    ['no iat', () => joseSigned(claims({ iat: undefined }))],
    ['no exp', () => joseSigned(claims({ exp: undefined }))],
    ['no jti', () => joseSigned(claims({ jti: undefined }))],
    ['a claim set that is an array', () => joseSigned([claims()] as never)],
    [
      'a claim set that is not JSON',
      async () => {
        const sign = new CompactSign(Buffer.from('{"iss":'));
        return sign.setProtectedHeader({ alg: 'HS256', typ: 'privcomm-device+jwt' }).sign(secret);
      },
    ],
    ['malformed base64url in the claim set', async () => (await good()).replace('.', '.*')],
    ['a fourth segment', async () => `${await good()}.${b64url({})}`],
    ['a fifth segment (JWE-shaped)', async () => `${await good()}..x`],
    ['two segments', async () => (await good()).split('.').slice(0, 2).join('.')],
    ['empty', async () => ''],
  ];
  it.each(cases)('%s', async (_, make) => {
    const token = await make();
    expect(await joseAccepts(token)).toBe(false);
    await expectRefused(token);
  });
});

describe('device tokens: stricter than jose', () => {
  it('a subject that names no device is refused (jose left sub to us, and so did the old code)', async () => {
    for (const bad of ['', 'someone', `${accountId}.0`, `${accountId}.1000`, `${accountId}`, 7]) {
      const token = await joseSigned(claims({ sub: bad }));
      await expectRefused(token);
    }
  });

  it('a second spelling of the right header is refused: only the bytes we issue pass', async () => {
    const headers = [
      { typ: 'privcomm-device+jwt', alg: 'HS256' }, // same fields, other order
      { alg: 'HS256', typ: 'application/privcomm-device+jwt' }, // jose normalised typ
      { alg: 'HS256', typ: 'PRIVCOMM-DEVICE+JWT' },
      { alg: 'HS256', typ: 'privcomm-device+jwt', kid: 'old' },
    ];
    for (const header of headers) {
      const token = await joseSigned(claims(), header);
      expect(await joseAccepts(token)).toBe(true);
      await expectRefused(token);
    }
  });

  it('a signature whose unused low bits differ is refused (jose decoded past them)', async () => {
    const token = await joseSigned(claims());
    const last = token.at(-1) ?? '';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // The last of 43 characters carries the signature's last 4 bits in the high bits of its
    // index; its 2 low bits are unused, so flipping the lowest gives the same bytes.
    const index = alphabet.indexOf(last);
    const sibling = alphabet[index ^ 1] ?? '';
    const variant = token.slice(0, -1) + sibling;
    expect(await joseAccepts(variant)).toBe(true);
    await expectRefused(variant);
  });

  it('a padded signature is refused (jose decoded past the padding)', async () => {
    const padded = `${await joseSigned(claims())}=`;
    expect(await joseAccepts(padded)).toBe(true);
    await expectRefused(padded);
  });

  it('iat, exp and nbf must be whole seconds', async () => {
    for (const overrides of [{ iat: NOW + 0.5 }, { exp: NOW + 300.5 }, { nbf: NOW - 0.5 }]) {
      const token = await joseSigned(claims(overrides));
      expect(await joseAccepts(token)).toBe(true);
      await expectRefused(token);
    }
  });

  it('jti must be a string', async () => {
    const token = await joseSigned(claims({ jti: 42 }));
    expect(await joseAccepts(token)).toBe(true);
    await expectRefused(token);
  });

  it('checks the HMAC it promises: a token signed by hand with node:crypto passes', async () => {
    const signingInput = `${b64url({ alg: 'HS256', typ: 'privcomm-device+jwt' })}.${b64url(claims())}`;
    const mac = createHmac('sha256', secret).update(signingInput).digest('base64url');
    expect(await tokens.verify(`${signingInput}.${mac}`)).toEqual({ accountId, deviceId });
  });
});
