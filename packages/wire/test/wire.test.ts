import fc from 'fast-check';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import {
  AUTH_CONTEXT,
  AccountIdSchema,
  AuthBodySchema,
  AuthKeySchema,
  BASE64_PATTERN,
  Base64,
  CLOSE_CODES,
  ChallengeRequestSchema,
  CreateAccountRequestSchema,
  DeviceIdSchema,
  ERRORS,
  ERROR_CODES,
  ErrorBodySchema,
  FrameSchema,
  IdentityKeySchema,
  KemPreKeySchema,
  KeyIdSchema,
  MAX_CONTENT_BYTES,
  MAX_DEVICE_ID,
  MAX_FRAME_BYTES,
  OutgoingMessageSchema,
  RegistrationIdSchema,
  SendMessagesRequestSchema,
  SignedPreKeySchema,
  TokenRequestSchema,
  UploadKeysRequestSchema,
  authChallengeMessage,
  socketAuthMessage,
  SOCKET_AUTH_CONTEXT,
  base64Length,
  deviceAddress,
  exactBase64Pattern,
  isAccountId,
  isDeviceId,
  type AccountId,
  type DeviceId,
} from '../src/index.ts';

const b64 = (bytes: number, fill = 7): string => Buffer.alloc(bytes, fill).toString('base64');
const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const TWO_53_PLUS_1 = 2 ** 53 + 1; // not representable: JSON.parse gives 2^53

const accountId = Compile(AccountIdSchema);
const deviceId = Compile(DeviceIdSchema);
const registrationId = Compile(RegistrationIdSchema);
const keyId = Compile(KeyIdSchema);
const frame = Compile(FrameSchema);

describe('identifiers', () => {
  it('accepts only the lowercase canonical UUID spelling', () => {
    expect(accountId.Check(UUID)).toBe(true);
    expect(accountId.Check('00000000-0000-0000-0000-000000000000')).toBe(true);
    for (const bad of [
      UUID.toUpperCase(),
      UUID.replace(/-/g, ''),
      `{${UUID}}`,
      `urn:uuid:${UUID}`,
      ` ${UUID}`,
      `${UUID} `,
      `${UUID}\n`,
      `${UUID}0`,
      UUID.slice(1),
      UUID.replace('a', 'g'),
      "' OR 1=1 --",
      `${UUID}'; DROP TABLE accounts; --`,
      '',
      42,
      null,
      [UUID],
    ]) {
      expect(accountId.Check(bad), JSON.stringify(bad)).toBe(false);
      expect(isAccountId(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(isAccountId(UUID)).toBe(true);
  });

  it('bounds device, registration and key ids, and refuses non-integers', () => {
    expect([1, 2, MAX_DEVICE_ID].every((v) => deviceId.Check(v) && isDeviceId(v))).toBe(true);
    for (const bad of [
      0,
      -1,
      MAX_DEVICE_ID + 1,
      1.5,
      '1',
      true,
      null,
      TWO_53_PLUS_1,
      Infinity,
      NaN,
    ]) {
      expect(deviceId.Check(bad), String(bad)).toBe(false);
      expect(isDeviceId(bad), String(bad)).toBe(false);
    }
    expect(registrationId.Check(1) && registrationId.Check(16380)).toBe(true);
    for (const bad of [0, 16381, -5, 2.5, '7', TWO_53_PLUS_1]) {
      expect(registrationId.Check(bad), String(bad)).toBe(false);
    }
    expect(keyId.Check(0) && keyId.Check(0xffffff)).toBe(true);
    for (const bad of [-1, 0x1000000, 0.5, '0', TWO_53_PLUS_1]) {
      expect(keyId.Check(bad), String(bad)).toBe(false);
    }
  });

  it('spells a device address as account.device', () => {
    expect(deviceAddress(UUID as AccountId, 3 as DeviceId)).toBe(`${UUID}.3`);
  });
});

describe('base64 fields', () => {
  it('computes encoded lengths', () => {
    expect([0, 1, 2, 3, 4, 32, 33, 64].map(base64Length)).toEqual([0, 4, 4, 4, 8, 44, 44, 88]);
    for (const bytes of [1, 2, 3, 31, 32, 33, 64, 1569]) {
      expect(b64(bytes)).toHaveLength(base64Length(bytes));
    }
  });

  it('fixes the exact size of a fixed-size field, for every size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.uint8Array({ maxLength: 104 }),
        (size, bytes) => {
          const pattern = new RegExp(exactBase64Pattern(size));
          const text = Buffer.from(bytes).toString('base64');
          expect(pattern.test(text)).toBe(bytes.length === size);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('accepts standard padded base64 and nothing else', () => {
    const pattern = new RegExp(BASE64_PATTERN);
    for (const good of ['', 'AA==', 'AAA=', 'AAAA', 'ab+/', b64(32), b64(33), b64(64)]) {
      expect(pattern.test(good), good).toBe(true);
    }
    for (const bad of [
      'A',
      'AA',
      'AAA',
      'AA=',
      'A===',
      '====',
      'AA==AAAA',
      'ab-_',
      'AA AA',
      'AAAA\n',
      '\nAAAA',
      'AAA==',
      'AA%3D',
      // Non-zero bits before the padding: these decode, but are not the canonical spelling.
      'AB==',
      'AP==',
      '//==',
      'AAB=',
      'AA/=',
      `${b64(31, 0xff).slice(0, -2)}/=`,
    ]) {
      expect(pattern.test(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('accepts exactly the canonical encodings: a string matches iff it re-encodes to itself', () => {
    const pattern = new RegExp(BASE64_PATTERN);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    // Every encoding of random bytes is accepted.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(pattern.test(Buffer.from(bytes).toString('base64'))).toBe(true);
      }),
      { numRuns: 1000 },
    );
    // Any well-formed string (alphabet, length, padding) is accepted only if canonical.
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...alphabet), { minLength: 2, maxLength: 40 }),
        fc.constantFrom(0, 1, 2),
        (chars, padding) => {
          const body = chars.slice(0, chars.length - ((chars.length + padding) % 4)).join('');
          const text = body + '='.repeat(padding);
          if (text.length % 4 !== 0 || body.length === 0) return;
          const canonical = Buffer.from(text, 'base64').toString('base64') === text;
          expect({ text, accepted: pattern.test(text) }).toEqual({ text, accepted: canonical });
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('bounds each key field by its decoded size', () => {
    // 31, 32 and 33 bytes all take 44 characters: the padding must decide.
    const identity = Compile(IdentityKeySchema);
    expect(identity.Check(b64(33))).toBe(true);
    for (const bytes of [31, 32, 34, 0])
      expect(identity.Check(b64(bytes)), String(bytes)).toBe(false);
    const auth = Compile(AuthKeySchema);
    expect(auth.Check(b64(32))).toBe(true);
    for (const bytes of [31, 33]) expect(auth.Check(b64(bytes)), String(bytes)).toBe(false);
    const signature = Compile(SignedPreKeySchema.properties.signature);
    expect(signature.Check(b64(64))).toBe(true);
    for (const bytes of [62, 63, 65, 66])
      expect(signature.Check(b64(bytes)), String(bytes)).toBe(false);
    // Unused bits after the last byte must be zero, so that each key has one spelling.
    const canonical = b64(32, 0xff); // ends in "/w="
    expect(auth.Check(canonical)).toBe(true);
    expect(auth.Check(`${canonical.slice(0, -2)}/=`)).toBe(false);
    expect(
      Buffer.from(`${canonical.slice(0, -2)}/=`, 'base64').equals(Buffer.from(canonical, 'base64')),
    ).toBe(true);
    const field = Compile(Base64(10, 2));
    expect(field.Check(b64(2)) && field.Check(b64(10))).toBe(true);
    expect(field.Check(b64(13))).toBe(false); // 20 characters > base64Length(10) = 16
    expect(field.Check('')).toBe(false);
    const kem = Compile(KemPreKeySchema);
    expect(kem.Check({ keyId: 1, publicKey: b64(1569), signature: b64(64) })).toBe(true);
    expect(kem.Check({ keyId: 1, publicKey: b64(1603), signature: b64(64) })).toBe(false);
    expect(kem.Check({ keyId: 1, publicKey: b64(1569), signature: b64(63) })).toBe(false);
  });
});

describe('request bodies', () => {
  const signed = { keyId: 1, publicKey: b64(33), signature: b64(64) };
  const kem = { keyId: 2, publicKey: b64(1569), signature: b64(64) };
  const registration = {
    identityKey: b64(33),
    registrationId: 42,
    authKey: b64(32),
    signedPreKey: signed,
    kyberLastResortPreKey: kem,
  };

  it('accepts a canonical registration and refuses extra, missing or mistyped fields', () => {
    const check = Compile(CreateAccountRequestSchema);
    expect(check.Check(registration)).toBe(true);
    expect(check.Check({ ...registration, inviteCode: 'abcdEFGH_-12' })).toBe(true);
    expect(check.Check({ ...registration, inviteCode: 'short' })).toBe(false);
    expect(check.Check({ ...registration, inviteCode: 'has space in it' })).toBe(false);
    expect(check.Check({ ...registration, admin: true })).toBe(false);
    expect(check.Check({ ...registration, signedPreKey: { ...signed, extra: 1 } })).toBe(false);
    expect(
      check.Check(
        JSON.parse(`{"__proto__":{"admin":true},${JSON.stringify(registration).slice(1)}`),
      ),
    ).toBe(false);
    for (const field of Object.keys(registration)) {
      const missing: Record<string, unknown> = { ...registration };
      delete missing[field];
      expect(check.Check(missing), `without ${field}`).toBe(false);
      expect(check.Check({ ...registration, [field]: '1' }), `${field} as a string`).toBe(false);
    }
    for (const body of [null, [], 'x', 1, [registration]]) expect(check.Check(body)).toBe(false);
    expect(check.Check({ ...registration, registrationId: '42' })).toBe(false);
  });

  it('checks challenge and token requests exactly', () => {
    const challenge = Compile(ChallengeRequestSchema);
    expect(challenge.Check({ accountId: UUID, deviceId: 1 })).toBe(true);
    expect(challenge.Check({ accountId: UUID.toUpperCase(), deviceId: 1 })).toBe(false);
    expect(challenge.Check({ accountId: UUID, deviceId: '1' })).toBe(false);
    expect(challenge.Check({ accountId: UUID, deviceId: TWO_53_PLUS_1 })).toBe(false);
    expect(challenge.Check({ accountId: UUID, deviceId: 1, x: 1 })).toBe(false);
    const token = Compile(TokenRequestSchema);
    const good = { accountId: UUID, deviceId: 1, nonce: b64(32), signature: b64(64) };
    expect(token.Check(good)).toBe(true);
    // Exact decoding of nonce and signature is the route's job (it answers VALIDATION_FAILED).
    expect(token.Check({ ...good, nonce: `${b64(32)}A` })).toBe(false);
    expect(token.Check({ ...good, nonce: b64(32).slice(1) })).toBe(false);
    expect(token.Check({ ...good, signature: b64(63) })).toBe(false);
  });

  it('bounds uploads and sends', () => {
    const upload = Compile(UploadKeysRequestSchema);
    const preKeys = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ keyId: i, publicKey: b64(33) }));
    expect(upload.Check({})).toBe(true);
    expect(upload.Check({ preKeys: preKeys(100), signedPreKey: signed })).toBe(true);
    expect(upload.Check({ preKeys: preKeys(101) })).toBe(false);
    expect(upload.Check({ preKeys: [{ keyId: -1, publicKey: b64(33) }] })).toBe(false);
    const message = { deviceId: 1, registrationId: 1, type: 1, content: b64(10) };
    const outgoing = Compile(OutgoingMessageSchema);
    expect(outgoing.Check(message)).toBe(true);
    // Size is not the schema's job: an oversize ciphertext must reach the handler and get 413.
    expect(outgoing.Check({ ...message, content: b64(MAX_CONTENT_BYTES + 1) })).toBe(true);
    // Nor the spelling: the relay checks it as it decodes (packages/server/src/canonical-base64.ts).
    expect(outgoing.Check({ ...message, content: 'not base64!' })).toBe(true);
    expect(outgoing.Check({ ...message, content: 'AA=' })).toBe(false); // shorter than 4
    expect(outgoing.Check({ ...message, type: 256 })).toBe(false);
    const send = Compile(SendMessagesRequestSchema);
    expect(send.Check({ messages: [message] })).toBe(true);
    expect(send.Check({ messages: [] })).toBe(false);
    expect(send.Check({ messages: Array.from({ length: 9 }, () => message) })).toBe(false);
    expect(send.Check({ messages: [message], online: 'yes' })).toBe(false);
  });
});

describe('authChallengeMessage', () => {
  it('is the context, account id and device id separated by colons, then the raw nonce', () => {
    const nonce = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
    const message = authChallengeMessage(UUID, 7, nonce);
    const prefix = `privcomm-device-auth-v1:${UUID}:7:`;
    expect(AUTH_CONTEXT).toBe('privcomm-device-auth-v1');
    expect(message).toBeInstanceOf(Uint8Array);
    expect(message.length).toBe(prefix.length + 32);
    expect(Buffer.from(message.subarray(0, prefix.length)).toString('latin1')).toBe(prefix);
    expect(
      Buffer.from(message.subarray(0, prefix.length)).equals(Buffer.from(prefix, 'utf8')),
    ).toBe(true);
    expect([...message.subarray(prefix.length)]).toEqual([...nonce]);
  });

  it('differs for every account, device and nonce', () => {
    const nonce = new Uint8Array(32);
    const base = Buffer.from(authChallengeMessage(UUID, 1, nonce));
    expect(base.equals(Buffer.from(authChallengeMessage(UUID, 11, nonce)))).toBe(false);
    expect(base.equals(Buffer.from(authChallengeMessage(UUID.replace('0f', '1f'), 1, nonce)))).toBe(
      false,
    );
    expect(
      base.equals(Buffer.from(authChallengeMessage(UUID, 1, new Uint8Array(32).fill(1)))),
    ).toBe(false);
  });
});

describe('socketAuthMessage', () => {
  it('is the login message under its own context, never the HTTP challenge’s bytes', () => {
    const nonce = Uint8Array.from({ length: 32 }, (_, i) => i);
    const message = socketAuthMessage(UUID, 7, nonce);
    const prefix = `privcomm-socket-auth-v1:${UUID}:7:`;
    expect(SOCKET_AUTH_CONTEXT).toBe('privcomm-socket-auth-v1');
    expect(Buffer.from(message.subarray(0, prefix.length)).toString('latin1')).toBe(prefix);
    expect([...message.subarray(prefix.length)]).toEqual([...nonce]);
    expect(Buffer.from(message).equals(Buffer.from(authChallengeMessage(UUID, 7, nonce)))).toBe(
      false,
    );
  });
});

describe('frames', () => {
  it('accepts requests and responses with 32-bit ids and nothing else', () => {
    expect(frame.Check({ type: 'request', id: 0, verb: 'ping' })).toBe(true);
    expect(
      frame.Check({ type: 'request', id: 0xffffffff, verb: 'auth', body: { token: 't' } }),
    ).toBe(true);
    expect(frame.Check({ type: 'response', id: 5, status: 200 })).toBe(true);
    expect(frame.Check({ type: 'response', id: 5, status: 599, body: [1] })).toBe(true);
    for (const bad of [
      { type: 'request', id: -1, verb: 'ping' },
      { type: 'request', id: 0x100000000, verb: 'ping' },
      { type: 'request', id: TWO_53_PLUS_1, verb: 'ping' },
      { type: 'request', id: 1.5, verb: 'ping' },
      { type: 'request', id: '1', verb: 'ping' },
      { type: 'request', verb: 'ping' },
      { type: 'request', id: 1 },
      { type: 'request', id: 1, verb: 'x'.repeat(33) },
      { type: 'request', id: 1, verb: 7 },
      { type: 'request', id: 1, verb: 'ping', extra: true },
      { type: 'response', id: 1, status: 99 },
      { type: 'response', id: 1, status: 600 },
      { type: 'response', id: 1, status: 200.5 },
      { type: 'response', id: 1 },
      { type: 'response', id: 1, status: 200, verb: 'ping' },
      { type: 'error', code: 'X', message: 'y' },
      { id: 1, verb: 'ping' },
      JSON.parse('{"type":"request","id":1,"verb":"ping","__proto__":{"x":1}}'),
      [],
      null,
      'request',
      1,
    ]) {
      expect(frame.Check(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(frame.Check({ type: 'request', id: 1, verb: 'x'.repeat(32) })).toBe(true);
  });

  it('checks the auth body', () => {
    const auth = Compile(AuthBodySchema);
    const signed = { accountId: UUID, deviceId: 2, signature: 'A'.repeat(86) + '==' };
    expect(auth.Check({ token: 'a' })).toBe(true);
    expect(auth.Check(signed)).toBe(true);
    for (const bad of [
      { token: '' },
      { token: 'a'.repeat(4097) },
      { token: 1 },
      {},
      { token: 'a', x: 1 },
      { ...signed, token: 'a' },
      { ...signed, signature: 'A'.repeat(87) },
      { ...signed, deviceId: 0 },
      { accountId: UUID, deviceId: 2 },
    ]) {
      expect(auth.Check(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('keeps the frame limit above the largest stored envelope', () => {
    // An envelope frame carries a 96 KiB ciphertext as base64 plus its JSON wrapping.
    expect(MAX_FRAME_BYTES).toBeGreaterThan(base64Length(MAX_CONTENT_BYTES) + 1024);
  });

  /** What the schema means, written out by hand: the oracle for the property below. */
  const isFrame = (value: unknown): boolean => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    const record = value as Record<string, unknown>;
    const isId = (id: unknown) =>
      Number.isInteger(id) && (id as number) >= 0 && (id as number) <= 0xffffffff;
    const keys = Object.keys(record);
    if (record.type === 'request') {
      return (
        keys.every((k) => ['type', 'id', 'verb', 'body'].includes(k)) &&
        isId(record.id) &&
        typeof record.verb === 'string' &&
        record.verb.length <= 32
      );
    }
    if (record.type === 'response') {
      return (
        keys.every((k) => ['type', 'id', 'status', 'body'].includes(k)) &&
        isId(record.id) &&
        Number.isInteger(record.status) &&
        (record.status as number) >= 100 &&
        (record.status as number) <= 599
      );
    }
    return false;
  };

  const frameLike = fc.record(
    {
      type: fc.constantFrom('request', 'response', 'error', 'Request', ''),
      id: fc.oneof(
        fc.integer({ min: -2, max: 10 }),
        fc.constantFrom(0xffffffff, 0x100000000, 2 ** 53, -0, 1.5),
        fc.string(),
      ),
      verb: fc.oneof(
        fc.constantFrom('ping', 'auth', 'x'.repeat(32), 'x'.repeat(33)),
        fc.string(),
        fc.integer(),
      ),
      status: fc.oneof(fc.integer({ min: 90, max: 610 }), fc.double(), fc.string()),
      body: fc.jsonValue(),
      extra: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );
  // As the relay receives it: parsed from text, where a "__proto__" key becomes an own property.
  const withProto = fc
    .tuple(frameLike, fc.jsonValue())
    .map(([value, proto]) =>
      `{"__proto__":${JSON.stringify(proto)},${JSON.stringify(value).slice(1)}`.replace(',}', '}'),
    );
  const wireValue = fc
    .oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      frameLike.map((v) => JSON.stringify(v)),
      withProto,
    )
    .map((text) => JSON.parse(text) as unknown);

  it('never throws on arbitrary JSON and agrees with the written-out rules', () => {
    fc.assert(
      fc.property(wireValue, (value) => {
        let result: boolean | undefined;
        expect(() => {
          result = frame.Check(value);
        }).not.toThrow();
        expect(result).toBe(isFrame(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on deeply nested values', () => {
    let nested: unknown = 1;
    for (let i = 0; i < 10_000; i += 1) nested = [nested];
    expect(frame.Check(nested)).toBe(false);
    expect(frame.Check({ type: 'request', id: 1, verb: 'ping', body: nested })).toBe(true);
    expect(frame.Check({ type: 'request', id: 1, verb: 'ping', extra: nested })).toBe(false);
  });
});

describe('error catalogue', () => {
  it('gives every code a fixed 4xx/5xx status, a message, and a body that matches ErrorBody', () => {
    const body = Compile(ErrorBodySchema);
    expect(ERROR_CODES).toEqual(Object.keys(ERRORS));
    for (const code of ERROR_CODES) {
      const { status, message } = ERRORS[code];
      expect(code).toMatch(/^[A-Z_]+$/);
      expect(status >= 400 && status <= 599, code).toBe(true);
      expect(message.length).toBeGreaterThan(10);
      expect(body.Check({ error: { code, message } })).toBe(true);
    }
    expect(body.Check({ error: { code: 'X' } })).toBe(false);
  });

  it('uses distinct close codes in the standard or private ranges', () => {
    const codes = Object.values(CLOSE_CODES);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes)
      expect((code >= 1000 && code <= 1015) || (code >= 4000 && code <= 4999)).toBe(true);
    expect(CLOSE_CODES).toMatchObject({
      TOO_BIG: 1009,
      PROTOCOL_VIOLATION: 4400,
      SLOW_CONSUMER: 4429,
    });
  });
});
