import { randomBytes, randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { Compile } from 'typebox/compile';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, ERRORS, FrameSchema, MAX_FRAME_BYTES, type ErrorCode } from '@privcomm/wire';
import { BODY_LIMIT_BYTES } from '../src/app.ts';
import { createTestDatabase, dumpDatabase } from './support/database.ts';
import {
  ecKey,
  http,
  kemPreKey,
  signature,
  TestDevice,
  TestSocket,
  type HttpResult,
} from './support/client.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;
/** A registered, authenticated device: bad input must fail validation, not authentication. */
let device: TestDevice;

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  relay = await startRelay(database.url);
  device = await TestDevice.register(relay.url);
});
afterAll(async () => {
  await relay?.close();
  await drop?.();
});

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';
/** 2^53 + 1 written out: JSON.parse cannot represent it and gives 2^53. */
const TWO_53_PLUS_1 = '9007199254740993';

/** Asserts a catalogue error: the documented status, code and message, and nothing else. */
const expectError = (result: HttpResult, code: ErrorCode, what = ''): void => {
  const context = `${what} → ${result.status} ${JSON.stringify(result.body)?.slice(0, 300)}`;
  expect(result.status, context).toBe(ERRORS[code].status);
  expect(result.body?.error?.code, context).toBe(code);
  expect(result.body.error.message, context).toBe(ERRORS[code].message);
  expect(Object.keys(result.body), context).toEqual(['error']);
  for (const key of Object.keys(result.body.error)) {
    expect(['code', 'message', 'details'], context).toContain(key);
  }
  if ('details' in result.body.error)
    expect(typeof result.body.error.details, context).toBe('string');
  expect(result.headers.get('content-type'), context).toMatch(/^application\/json/);
};

/** A request with full control over body bytes and headers. */
const raw = (
  method: string,
  path: string,
  options: {
    body?: string | Buffer | ReadableStream;
    contentType?: string;
    token?: string;
    authorization?: string;
  } = {},
): Promise<HttpResult> =>
  fetch(`${relay.url}${path}`, {
    method,
    headers: {
      ...(options.contentType === undefined ? {} : { 'content-type': options.contentType }),
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
    },
    body: options.body,
    ...(options.body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit).then(async (response) => {
    const text = await response.text();
    let body: unknown = text;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      // keep the text
    }
    return { status: response.status, body, headers: response.headers };
  });

const json = (
  method: string,
  path: string,
  body: string | Buffer,
  token: string | undefined = device.token,
) => raw(method, path, { body, contentType: 'application/json', token });

const validRegistration = () => new TestDevice(relay.url).registrationBody();
const validMessage = () => ({ deviceId: 1, registrationId: 1, type: 1, content: 'aGVsbG8=' });

/** Every JSON-body route, with a valid body for it (valid in shape; the ids need not exist). */
const jsonRoutes = (): { method: string; path: string; body: Record<string, unknown> }[] => [
  { method: 'POST', path: '/v1/accounts', body: validRegistration() },
  { method: 'POST', path: '/v1/auth/challenge', body: { accountId: UUID, deviceId: 1 } },
  {
    method: 'POST',
    path: '/v1/auth/token',
    body: {
      accountId: UUID,
      deviceId: 1,
      nonce: randomBytes(32).toString('base64'),
      signature: signature(),
    },
  },
  {
    method: 'POST',
    path: '/v1/devices',
    body: {
      linkToken: randomBytes(24).toString('base64url'),
      ...new TestDevice(relay.url).newDeviceFields(),
    },
  },
  {
    method: 'PUT',
    path: '/v1/keys',
    body: { signedPreKey: { keyId: 1, publicKey: ecKey(), signature: signature() } },
  },
  { method: 'PUT', path: `/v1/messages/${UUID}`, body: { messages: [validMessage()] } },
];

const countAccounts = async (): Promise<number> => {
  const result = await relay.relay.context.database.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM accounts',
  );
  return Number(result.rows[0]?.n);
};

describe('HTTP: bad input is refused with a catalogue error, and writes nothing', () => {
  let before: string;
  let accountsBefore: number;
  beforeEach(async () => {
    before = await dumpDatabase(databaseUrl);
    accountsBefore = await countAccounts();
  });
  afterEach(async () => {
    expect(await countAccounts()).toBe(accountsBefore);
    expect(await dumpDatabase(databaseUrl)).toBe(before);
  });

  it('answers malformed JSON with 400 MALFORMED_JSON on every JSON route', async () => {
    const bodies = [
      '',
      '{',
      '{"identityKey":',
      '[1,2',
      'nul',
      "{'single':'quotes'}",
      '{"a":1,}',
      '{"a":01}',
      '{"a":NaN}',
      '{} trailing',
      '{"a":"\u0000',
      '\u0000',
      '{"a":"unterminated}',
      `{"a":${'['.repeat(100)}`,
    ];
    for (const route of jsonRoutes()) {
      for (const body of bodies) {
        expectError(
          await json(route.method, route.path, body),
          'MALFORMED_JSON',
          `${route.path} ${JSON.stringify(body)}`,
        );
      }
      // A valid body for the route, one byte short, is still malformed.
      const truncated = JSON.stringify(route.body).slice(0, -1);
      expectError(
        await json(route.method, route.path, truncated),
        'MALFORMED_JSON',
        `${route.path} truncated`,
      );
    }
  });

  it('answers a body that is not an object with 400 VALIDATION_FAILED', async () => {
    for (const route of jsonRoutes()) {
      // {} is a valid (empty) key upload; everywhere else it lacks required fields.
      const bodies = [
        'null',
        '[]',
        '[{}]',
        '"text"',
        '42',
        'true',
        ...(route.path === '/v1/keys' ? [] : ['{}']),
      ];
      for (const body of bodies) {
        expectError(
          await json(route.method, route.path, body),
          'VALIDATION_FAILED',
          `${route.path} ${body}`,
        );
      }
    }
  });

  it('answers wrong types, missing fields and extra properties with 400 VALIDATION_FAILED', async () => {
    const registration = validRegistration();
    const variants: [string, unknown][] = [];
    for (const field of Object.keys(registration)) {
      const without: Record<string, unknown> = { ...registration };
      delete without[field];
      variants.push([`without ${field}`, without]);
      for (const wrong of [null, '1', -1, true, [], {}]) {
        variants.push([`${field}=${JSON.stringify(wrong)}`, { ...registration, [field]: wrong }]);
      }
    }
    variants.push(
      ['extra property', { ...registration, admin: true }],
      [
        'extra nested property',
        { ...registration, signedPreKey: { ...registration.signedPreKey, x: 1 } },
      ],
      [
        'registrationId as a string',
        { ...registration, registrationId: String(registration.registrationId) },
      ],
      ['registrationId 0', { ...registration, registrationId: 0 }],
      ['registrationId 16381', { ...registration, registrationId: 16381 }],
      ['registrationId fractional', { ...registration, registrationId: 1.5 }],
      [
        'keyId negative',
        { ...registration, signedPreKey: { ...registration.signedPreKey, keyId: -1 } },
      ],
      [
        'keyId 2^24',
        { ...registration, signedPreKey: { ...registration.signedPreKey, keyId: 0x1000000 } },
      ],
      [
        'identity key of 32 bytes',
        { ...registration, identityKey: randomBytes(32).toString('base64') },
      ],
      [
        'identity key of 34 bytes',
        { ...registration, identityKey: randomBytes(34).toString('base64') },
      ],
      ['auth key of 31 bytes', { ...registration, authKey: randomBytes(31).toString('base64') }],
      ['auth key of 33 bytes', { ...registration, authKey: randomBytes(33).toString('base64') }],
      [
        'identity key unpadded',
        { ...registration, authKey: randomBytes(32).toString('base64').replace('=', '') },
      ],
      ['identity key base64url', { ...registration, identityKey: `-_${ecKey().slice(2)}` }],
      [
        'identity key with a newline',
        { ...registration, identityKey: `${ecKey().slice(0, 20)}\n${ecKey().slice(21)}` },
      ],
      [
        'kem key too long',
        {
          ...registration,
          kyberLastResortPreKey: {
            ...kemPreKey(),
            publicKey: randomBytes(1700).toString('base64'),
          },
        },
      ],
      ['invite code with spaces', { ...registration, inviteCode: 'not a valid code' }],
      ['invite code SQL', { ...registration, inviteCode: "x' OR '1'='1" }],
    );
    for (const [what, body] of variants) {
      expectError(
        await json('POST', '/v1/accounts', JSON.stringify(body), undefined),
        'VALIDATION_FAILED',
        what,
      );
    }
  });

  it('refuses negative, huge, unrepresentable, SQL-ish and non-canonical ids in bodies', async () => {
    const deviceIds = [
      '-1',
      '0',
      '128',
      '1.5',
      '1e400',
      '-1e400',
      TWO_53_PLUS_1,
      '1e308',
      '123456789012345678901234567890',
      '"1"',
      'null',
      '[1]',
      '{"$gt":0}',
    ];
    const accountIds = [
      UUID.toUpperCase(),
      UUID.replace(/-/g, ''),
      `{${UUID}}`,
      `${UUID}\n`,
      ` ${UUID}`,
      "' OR 1=1 --",
      `${UUID}'; DROP TABLE accounts; --`,
      '00000000-0000-0000-0000-00000000000',
      '../../etc/passwd',
      '',
    ];
    const bodies: string[] = [];
    for (const id of deviceIds) bodies.push(`{"accountId":"${device.accountId}","deviceId":${id}}`);
    for (const id of accountIds) bodies.push(JSON.stringify({ accountId: id, deviceId: 1 }));
    bodies.push(
      `{"accountId":${JSON.stringify(device.accountId)},"deviceId":1,"deviceId":${TWO_53_PLUS_1}}`,
    );
    for (const body of bodies) {
      expectError(
        await json('POST', '/v1/auth/challenge', body, undefined),
        'VALIDATION_FAILED',
        body,
      );
      const token = `{"nonce":"${randomBytes(32).toString('base64')}","signature":"${signature()}",${body.slice(1)}`;
      expectError(
        await json('POST', '/v1/auth/token', token, undefined),
        'VALIDATION_FAILED',
        token,
      );
    }
    // Right length, wrong decoding: caught by the route, before any challenge is consumed.
    for (const [nonce, sig] of [
      [randomBytes(33).toString('base64'), signature()],
      [randomBytes(32).toString('base64'), randomBytes(65).toString('base64')],
      [`${'/'.repeat(43)}=`, signature()],
    ]) {
      const body = JSON.stringify({
        accountId: device.accountId,
        deviceId: 1,
        nonce,
        signature: sig,
      });
      expectError(await json('POST', '/v1/auth/token', body, undefined), 'VALIDATION_FAILED', body);
    }
    for (const id of [TWO_53_PLUS_1, '-1', '4294967296', '256', '1.5']) {
      const messages = `{"messages":[{"deviceId":1,"registrationId":1,"type":${id},"content":"aGVsbG8="}]}`;
      expectError(
        await json('PUT', `/v1/messages/${device.accountId}`, messages),
        'VALIDATION_FAILED',
        messages,
      );
      const keys = `{"preKeys":[{"keyId":${id === '256' ? '16777216' : id},"publicKey":"${ecKey()}"}]}`;
      expectError(await json('PUT', '/v1/keys', keys), 'VALIDATION_FAILED', keys);
    }
  });

  it('refuses bad ids in paths, even with a valid token', async () => {
    const accountIds = [
      UUID.toUpperCase(),
      UUID.replace(/-/g, ''),
      encodeURIComponent("' OR 1=1 --"),
      encodeURIComponent(`${UUID}; DROP TABLE accounts`),
      `${UUID}%00`,
      `${UUID}%0A`,
      'a%2Fb',
      '%7B%7D',
      'null',
      TWO_53_PLUS_1,
    ];
    const deviceIds = [
      '0',
      '-1',
      '01',
      '+1',
      '1e0',
      '1.0',
      '128',
      '999',
      '1000',
      TWO_53_PLUS_1,
      'one',
      '%20',
      '1%00',
      '**',
    ];
    for (const accountId of accountIds) {
      expectError(
        await device.request('GET', `/v1/keys/${accountId}/1`),
        'VALIDATION_FAILED',
        accountId,
      );
      expectError(
        await device.request('PUT', `/v1/messages/${accountId}`, { messages: [validMessage()] }),
        'VALIDATION_FAILED',
        accountId,
      );
    }
    for (const deviceId of deviceIds) {
      expectError(
        await device.request('GET', `/v1/keys/${device.accountId}/${deviceId}`),
        'VALIDATION_FAILED',
        deviceId,
      );
      expectError(
        await device.request('DELETE', `/v1/devices/${deviceId}`),
        'VALIDATION_FAILED',
        deviceId,
      );
    }
  });

  it('refuses __proto__ and constructor.prototype keys with 400', async () => {
    const registration = JSON.stringify(validRegistration()).slice(1);
    const poisoned = [
      `{"__proto__":{"polluted":true},${registration}`,
      `{"constructor":{"prototype":{"polluted":true}},${registration}`,
      `{${registration.slice(0, -1)},"signedPreKey":{"__proto__":{"polluted":true},"keyId":1,"publicKey":"${ecKey()}","signature":"${signature()}"}}`,
      `{"__proto__":{"isAdmin":true}}`,
    ];
    for (const body of poisoned) {
      for (const route of jsonRoutes()) {
        const result = await json(
          route.method,
          route.path,
          body.replace(registration, JSON.stringify(route.body).slice(1)),
        );
        expect(result.status, `${route.path} ${body.slice(0, 60)}`).toBe(400);
        const code = result.body?.error?.code as ErrorCode;
        expect(['MALFORMED_JSON', 'VALIDATION_FAILED']).toContain(code);
        expectError(result, code, route.path);
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  it('answers a body over 1 MiB with 413 BODY_TOO_LARGE, with or without a length', async () => {
    const filler = (bytes: number) => {
      const prefix = '{"identityKey":"';
      return Buffer.from(`${prefix}${'A'.repeat(bytes - prefix.length - 2)}"}`);
    };
    const over = filler(BODY_LIMIT_BYTES + 1);
    expect(over.length).toBe(BODY_LIMIT_BYTES + 1);
    expectError(
      await json('POST', '/v1/accounts', over, undefined),
      'BODY_TOO_LARGE',
      'content-length',
    );
    expectError(
      await json('PUT', `/v1/messages/${device.accountId}`, filler(4 * BODY_LIMIT_BYTES)),
      'BODY_TOO_LARGE',
      'messages',
    );
    // Chunked, so the relay only learns the size while reading.
    const chunks = Array.from({ length: 20 }, () => Buffer.alloc(64 * 1024, 0x41));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(Buffer.from('{"identityKey":"'));
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.enqueue(Buffer.from('"}'));
        controller.close();
      },
    });
    expectError(
      await raw('POST', '/v1/accounts', { body: stream, contentType: 'application/json' }),
      'BODY_TOO_LARGE',
      'chunked',
    );
    // Exactly at the limit the body is read, parsed and validated.
    expectError(
      await json('POST', '/v1/accounts', filler(BODY_LIMIT_BYTES), undefined),
      'VALIDATION_FAILED',
      'at the limit',
    );
  });

  it('answers a body that is not JSON with 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const body = JSON.stringify(validRegistration());
    for (const contentType of [
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/octet-stream',
      'application/jsonx',
      'json',
    ]) {
      for (const route of jsonRoutes()) {
        expectError(
          await raw(route.method, route.path, { body, contentType, token: device.token }),
          'UNSUPPORTED_MEDIA_TYPE',
          `${route.path} ${contentType}`,
        );
      }
    }
    // No content type at all, with a body.
    expectError(
      await raw('POST', '/v1/accounts', { body: Buffer.from(body) }),
      'UNSUPPORTED_MEDIA_TYPE',
      'none',
    );
  });

  it('answers unknown routes and methods with 404 NOT_FOUND', async () => {
    for (const [method, path] of [
      ['GET', '/'],
      ['GET', '/v1'],
      ['GET', '/v1/nope'],
      ['POST', '/v1/nope'],
      ['GET', '/v2/accounts'],
      ['GET', '/v1/accounts'],
      ['PUT', '/v1/accounts'],
      ['DELETE', '/v1/accounts'],
      ['PATCH', '/v1/accounts/me'],
      ['GET', `/v1/keys/${UUID}`],
      ['GET', `/v1/keys/${UUID}/1/extra`],
      ['PUT', '/v1/messages'],
      ['GET', '/v1/messages/me'],
      ['POST', '/health'],
      ['GET', '/etc/passwd'],
      ['GET', '/v1/accounts%2Fme'],
      ['GET', `/${'x'.repeat(4000)}`],
      ['GET', '/__proto__'],
      ['GET', '/constructor'],
    ] as const) {
      expectError(
        await raw(method, path, { token: device.token }),
        'NOT_FOUND',
        `${method} ${path}`,
      );
    }
  });

  it('answers a missing, malformed or forged token with 401 UNAUTHENTICATED', async () => {
    for (const authorization of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Bearer ${'a'.repeat(5000)}`,
      'Basic dXNlcjpwYXNz',
      'bearer x.y.z',
      'Bearer x.y.z',
      `Bearer ${device.token}x`,
      `Bearer ${device.token.split('.').slice(0, 2).join('.')}.${randomBytes(32).toString('base64url')}`,
      `Bearer ${Buffer.from('{"alg":"none","typ":"privcomm-device+jwt"}').toString('base64url')}.${device.token.split('.')[1]}.`,
    ]) {
      expectError(
        await raw('GET', '/v1/devices', authorization === undefined ? {} : { authorization }),
        'UNAUTHENTICATED',
        authorization,
      );
    }
  });

  it('survives random bytes as JSON bodies on every route', async () => {
    for (const route of jsonRoutes()) {
      for (let i = 0; i < 10; i += 1) {
        const result = await json(route.method, route.path, randomBytes(randomInt(1, 2048)));
        expect([400, 413], route.path).toContain(result.status);
        expectError(result, result.body?.error?.code as ErrorCode, route.path);
        expect(['MALFORMED_JSON', 'VALIDATION_FAILED']).toContain(result.body.error.code);
      }
    }
  });
});

/* ------------------------------------------------------------------------------------------ */

type Expected =
  | { reply: 'error'; code: ErrorCode }
  | { reply: 'response'; id: number; status: 200 | 404 }
  | { reply: 'none' };

interface Malformed {
  kind: string;
  data: string | Buffer;
  binary?: boolean;
  expected: Expected;
}

const frameValidator = Compile(FrameSchema);

/** What the relay must answer to a text frame: the protocol, written out. */
const expectedFor = (text: string): Expected => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { reply: 'error', code: 'MALFORMED_JSON' };
  }
  if (!frameValidator.Check(value)) return { reply: 'error', code: 'VALIDATION_FAILED' };
  const frame = value as { type: string; id: number; verb?: string };
  if (frame.type === 'response') return { reply: 'none' };
  return { reply: 'response', id: frame.id, status: frame.verb === 'ping' ? 200 : 404 };
};

const nested = (depth: number, open: string, close: string, inner = '1') =>
  `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
const pick = <T>(items: readonly T[]): T => items[randomInt(items.length)]!;
const randomText = (): string => {
  const alphabet = '{}[]":,0123456789.eE+-truefalsnl \\/\n\tabcé€😀';
  return Array.from({ length: randomInt(1, 200) }, () => pick([...alphabet])).join('');
};

/** Frames the relay must refuse one by one with an error frame. */
const invalidFrame = (): Malformed => {
  const id = randomInt(1, 1_000_000);
  const invalid = (
    kind: string,
    data: string,
    code: ErrorCode = 'VALIDATION_FAILED',
  ): Malformed => ({
    kind,
    data,
    expected: { reply: 'error', code },
  });
  const generators: (() => Malformed)[] = [
    () => ({
      kind: 'binary random bytes',
      data: randomBytes(randomInt(1, 512)),
      binary: true,
      expected: { reply: 'error', code: 'VALIDATION_FAILED' },
    }),
    () => ({
      kind: 'binary JSON',
      data: Buffer.from(`{"type":"request","id":${id},"verb":"ping"}`),
      binary: true,
      expected: { reply: 'error', code: 'VALIDATION_FAILED' },
    }),
    () => {
      const text = randomText();
      return { kind: 'random text', data: text, expected: expectedFor(text) };
    },
    () => {
      const full = JSON.stringify({
        type: 'request',
        id,
        verb: 'ping',
        body: { pad: 'x'.repeat(randomInt(0, 100)) },
      });
      return invalid('truncated JSON', full.slice(0, randomInt(1, full.length)), 'MALFORMED_JSON');
    },
    () => invalid('unbalanced deep nesting', '['.repeat(10_000), 'MALFORMED_JSON'),
    () =>
      invalid(
        'not JSON',
        pick(['', ' ', 'ping', 'undefined', "{'type':'request'}", '{"type":"request",}']),
        'MALFORMED_JSON',
      ),
    () => invalid('deep nesting, 10k arrays', nested(10_000, '[', ']')),
    () => invalid('deep nesting, 10k objects', nested(10_000, '{"a":', '}')),
    () =>
      invalid(
        'deep nesting as an extra field',
        `{"type":"request","id":${id},"verb":"ping","x":${nested(10_000, '[', ']')}}`,
      ),
    () => invalid('id 2^53+1', `{"type":"request","id":${TWO_53_PLUS_1},"verb":"ping"}`),
    () => invalid('id 2^32', `{"type":"request","id":4294967296,"verb":"ping"}`),
    () => invalid('negative id', `{"type":"request","id":-${id},"verb":"ping"}`),
    () => invalid('fractional id', `{"type":"request","id":${id}.5,"verb":"ping"}`),
    () => invalid('infinite id', `{"type":"response","id":1e400,"status":200}`),
    () => invalid('string id', `{"type":"request","id":"${id}","verb":"ping"}`),
    () => invalid('missing id', `{"type":"request","verb":"ping"}`),
    () => invalid('numeric verb', `{"type":"request","id":${id},"verb":7}`),
    () => invalid('long verb', JSON.stringify({ type: 'request', id, verb: 'v'.repeat(33) })),
    () =>
      invalid(
        'status out of range',
        `{"type":"response","id":${id},"status":${pick([0, 99, 600, 1000, -200])}}`,
      ),
    () => invalid('string status', `{"type":"response","id":${id},"status":"200"}`),
    () =>
      invalid(
        'unknown type',
        JSON.stringify({
          type: pick(['error', 'Request', 'REQUEST', 'event', '']),
          id,
          verb: 'ping',
        }),
      ),
    () =>
      invalid(
        'wrong shape',
        pick([
          'null',
          'true',
          '42',
          '"request"',
          '[]',
          '{}',
          `[{"type":"request","id":${id},"verb":"ping"}]`,
        ]),
      ),
    () =>
      invalid(
        '__proto__ key',
        `{"type":"request","id":${id},"verb":"ping","__proto__":{"polluted":true}}`,
      ),
    () =>
      invalid(
        'constructor key',
        `{"type":"request","id":${id},"verb":"ping","constructor":{"prototype":{"polluted":true}}}`,
      ),
    () => invalid('extra property', `{"type":"request","id":${id},"verb":"ping","status":200}`),
    () =>
      invalid(
        'duplicate key to a bad value',
        `{"type":"request","id":${id},"verb":"ping","id":-1}`,
      ),
  ];
  return pick(generators)();
};

/** Odd frames that are valid: unknown verbs (404), answers to ids never sent (ignored). */
const oddValidFrame = (): Malformed => {
  const id = randomInt(0, 0x100000000);
  const generators: (() => Malformed)[] = [
    () => {
      const verb = pick([
        'auth',
        'envelope',
        'queue.empty',
        '__proto__',
        'constructor',
        'toString',
        'hasOwnProperty',
        'PING',
        ' ping',
        '',
        '😀',
        randomBytes(8).toString('hex'),
      ]);
      return {
        kind: `unknown verb ${verb}`,
        data: JSON.stringify({ type: 'request', id, verb }),
        expected: { reply: 'response', id, status: 404 },
      };
    },
    () => ({
      kind: 'response to an unknown id',
      data: JSON.stringify({ type: 'response', id, status: pick([200, 204, 400, 500]) }),
      expected: { reply: 'none' },
    }),
    () => ({
      kind: 'ping with __proto__ in its body',
      data: `{"type":"request","id":${id},"verb":"ping","body":{"__proto__":{"polluted":true}}}`,
      expected: { reply: 'response', id, status: 200 },
    }),
    () => ({
      kind: 'ping with a 10k-deep body',
      data: `{"type":"request","id":${id},"verb":"ping","body":${nested(10_000, '[', ']')}}`,
      expected: { reply: 'response', id, status: 200 },
    }),
    () => ({
      kind: 'response with a 10k-deep body',
      data: `{"type":"response","id":${id},"status":200,"body":${nested(10_000, '{"a":', '}')}}`,
      expected: { reply: 'none' },
    }),
  ];
  return pick(generators)();
};

/** Frames the relay sent in reply, in order: all but its own requests and the auth response. */
const replies = (socket: TestSocket): any[] =>
  socket.frames.filter(
    (frame) => frame.type !== 'request' && !(frame.type === 'response' && frame.body?.accountId),
  );

const expectReply = (frame: any, expected: Expected, kind: string): void => {
  const context = `${kind}: ${JSON.stringify(frame)?.slice(0, 200)}`;
  if (expected.reply === 'error') {
    expect(frame, context).toMatchObject({
      type: 'error',
      code: expected.code,
      message: ERRORS[expected.code].message,
    });
  } else if (expected.reply === 'response') {
    expect(frame, context).toMatchObject({
      type: 'response',
      id: expected.id,
      status: expected.status,
    });
    if (expected.status === 404) {
      expect(frame.body, context).toMatchObject({
        error: { code: 'NOT_FOUND', message: ERRORS.NOT_FOUND.message },
      });
    }
  }
};

const sendFrame = (socket: TestSocket, frame: Malformed): void => {
  socket.ws.send(frame.data, { binary: frame.binary === true });
};

const invalidFrameCount = async (): Promise<number> =>
  (await relay.relay.context.metrics.invalidFrames.get()).values[0]?.value ?? 0;

const MAX_INVALID_FRAMES = 20;

/** Error-level log lines: a client's bad input is never a relay error. */
const errorLogs = (): string[] => relay.logs.filter((line) => /"level":(50|60)/.test(line));

describe('WebSocket: malformed frames', () => {
  it('answers thousands of malformed frames one by one, closes with 4400 after 20 invalid ones, and stays up', async () => {
    const SOCKETS = 50;
    const ODD_PER_SOCKET = 19; // with 21 invalid frames: 2,000 frames in all
    const devices: TestDevice[] = [];
    for (let i = 0; i < SOCKETS; i += 1) devices.push(await TestDevice.register(relay.url));
    const invalidBefore = await invalidFrameCount();
    const rssBefore = process.memoryUsage().rss;
    const kinds = new Map<string, number>();
    let sent = 0;

    const runSocket = async (owner: TestDevice): Promise<void> => {
      const socket = await TestSocket.connect(relay.wsUrl, owner);
      const frames: Malformed[] = [
        ...Array.from({ length: MAX_INVALID_FRAMES }, invalidFrame),
        ...Array.from({ length: ODD_PER_SOCKET }, oddValidFrame),
      ].sort(() => Math.random() - 0.5);
      // Random text is sometimes valid JSON, so count what each frame is, not what it was meant to be.
      const invalid = frames.filter((frame) => frame.expected.reply === 'error').length;
      expect(invalid).toBe(MAX_INVALID_FRAMES);
      const last = {
        kind: 'the 21st invalid frame',
        data: '{"type":"request"',
        expected: { reply: 'error', code: 'MALFORMED_JSON' },
      } as const;
      for (const frame of [...frames, last]) {
        kinds.set(frame.kind, (kinds.get(frame.kind) ?? 0) + 1);
        sendFrame(socket, frame);
        sent += 1;
      }
      expect(await socket.closed).toBe(CLOSE_CODES.PROTOCOL_VIOLATION);
      const expected = frames.filter((frame) => frame.expected.reply !== 'none');
      const received = replies(socket);
      expect(received).toHaveLength(expected.length);
      expected.forEach((frame, index) => expectReply(received[index], frame.expected, frame.kind));
    };

    for (let i = 0; i < SOCKETS; i += 10) {
      await Promise.all(devices.slice(i, i + 10).map(runSocket));
    }
    expect(sent).toBe(2_000);
    expect(kinds.size).toBeGreaterThan(25);
    expect(await invalidFrameCount()).toBe(invalidBefore + SOCKETS * (MAX_INVALID_FRAMES + 1));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await http(relay.url, 'GET', '/health')).status).toBe(200);
    expect((await http(relay.url, 'GET', '/ready')).status).toBe(200);
    // The devices still work: a fresh socket authenticates and answers pings.
    const again = await TestSocket.connect(relay.wsUrl, devices[0]!);
    expect((await again.request('ping')).status).toBe(200);
    await again.close();
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(50 * 1024 * 1024);
    expect(errorLogs()).toEqual([]);
  });

  it('gives an unauthenticated socket the same error frames, and closes on a valid non-auth frame', async () => {
    const socket = await TestSocket.open(relay.wsUrl);
    for (let i = 0; i < MAX_INVALID_FRAMES; i += 1)
      socket.sendRaw(`{"type":"request","id":${i},"verb":`);
    await socket.until(
      () => replies(socket).length === MAX_INVALID_FRAMES,
      5_000,
      'twenty error frames',
    );
    expect(
      replies(socket).every((frame) => frame.type === 'error' && frame.code === 'MALFORMED_JSON'),
    ).toBe(true);
    socket.sendRaw(Buffer.from([0xde, 0xad]));
    expect(await socket.closed).toBe(CLOSE_CODES.PROTOCOL_VIOLATION);

    const premature = await TestSocket.open(relay.wsUrl);
    premature.sendRaw(JSON.stringify({ type: 'request', id: 1, verb: 'ping' }));
    expect(await premature.closed).toBe(CLOSE_CODES.UNAUTHENTICATED);

    for (const body of [
      undefined,
      null,
      {},
      { token: '' },
      { token: 5 },
      { token: 'x'.repeat(5000) },
      { token: 'a.b.c' },
      { token: device.token, extra: 1 },
    ]) {
      const bad = await TestSocket.open(relay.wsUrl);
      expect((await bad.request('auth', body)).status, JSON.stringify(body)).toBe(
        CLOSE_CODES.UNAUTHENTICATED,
      );
    }
  });

  it('closes a text frame that is not UTF-8 with 1007 and stays up', async () => {
    const owner = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, owner);
    socket.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect(await socket.closed).toBe(1007);
    expect((await http(relay.url, 'GET', '/health')).status).toBe(200);
    expect(errorLogs()).toEqual([]);
  });

  it('answers a frame and then closes with 1007 when both arrive in one TCP segment', async () => {
    // Both frames arrive in one read: the ping's answer corks the relay's socket until the end of
    // the turn (write-coalescing.ts), and ws writes its close frame for the broken one behind it.
    // Until 2026-12-06 the relay's websocket error handler then terminated the socket, which
    // threw away both unflushed frames: the client saw 1006 (docs/benchmarks.md, item 37).
    const owner = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, owner);
    const transport = (socket.ws as unknown as { _socket: Socket })._socket;
    transport.cork();
    socket.sendRaw(JSON.stringify({ type: 'request', id: 5, verb: 'ping' }));
    socket.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    transport.uncork();
    expect(await socket.closed).toBe(1007);
    expect(replies(socket)).toEqual([{ type: 'response', id: 5, status: 200 }]);
    expect(errorLogs()).toEqual([]);
  });

  it('closes a frame over MAX_FRAME_BYTES with 1009 and accepts one of exactly that size', async () => {
    const owner = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, owner);
    const frameOf = (bytes: number, id: number) => {
      const prefix = `{"type":"request","id":${id},"verb":"ping","body":"`;
      return `${prefix}${'x'.repeat(bytes - prefix.length - 2)}"}`;
    };
    const atLimit = frameOf(MAX_FRAME_BYTES, 7);
    expect(Buffer.byteLength(atLimit)).toBe(MAX_FRAME_BYTES);
    socket.sendRaw(atLimit);
    await socket.until(() => replies(socket).length === 1, 5_000, 'answer to the largest frame');
    expect(replies(socket)[0]).toMatchObject({ type: 'response', id: 7, status: 200 });

    socket.sendRaw(frameOf(MAX_FRAME_BYTES + 1, 8));
    expect(await socket.closed).toBe(CLOSE_CODES.TOO_BIG);
    expect(replies(socket)).toHaveLength(1);

    const huge = await TestSocket.connect(relay.wsUrl, owner);
    huge.sendRaw(Buffer.alloc(8 * MAX_FRAME_BYTES, 0x20));
    expect(await huge.closed).toBe(CLOSE_CODES.TOO_BIG);
    expect((await http(relay.url, 'GET', '/health')).status).toBe(200);
    expect(errorLogs()).toEqual([]);
  });

  it('closes a socket that floods frames faster than the rate with 4429', async () => {
    const owner = await TestDevice.register(relay.url);
    const socket = await TestSocket.connect(relay.wsUrl, owner);
    const FLOOD = 2_000;
    for (let id = 1_000; id < 1_000 + FLOOD; id += 1)
      socket.sendRaw(`{"type":"request","id":${id},"verb":"ping"}`);
    expect(await socket.closed).toBe(CLOSE_CODES.SLOW_CONSUMER);
    const pongs = replies(socket).filter(
      (frame) => frame.type === 'response' && frame.status === 200,
    );
    // The burst (400 frames, one of them the auth frame) is always allowed; the flood is not.
    expect(pongs.length).toBeGreaterThanOrEqual(399);
    expect(pongs.length).toBeLessThan(FLOOD);
    expect(pongs.map((frame) => frame.id)).toEqual(
      Array.from({ length: pongs.length }, (_, i) => 1_000 + i),
    );
    // A flood is not a ban: the device reconnects at once.
    const again = await TestSocket.connect(relay.wsUrl, owner);
    expect((await again.request('ping')).status).toBe(200);
    await again.close();
    expect((await http(relay.url, 'GET', '/health')).status).toBe(200);
  });

  it('never crashes on arbitrary JSON frames (property)', async () => {
    const pool: TestDevice[] = [];
    for (let i = 0; i < 20; i += 1) pool.push(await TestDevice.register(relay.url));
    let socket: TestSocket | undefined;
    let invalidOnSocket = 0;
    let framesOnSocket = 0;
    let next = 0;
    let sentinel = 0x80000000;
    const current = async (): Promise<TestSocket> => {
      if (
        socket &&
        invalidOnSocket < MAX_INVALID_FRAMES &&
        framesOnSocket < 300 &&
        socket.closeCode === undefined
      ) {
        return socket;
      }
      await socket?.close();
      socket = await TestSocket.connect(relay.wsUrl, pool[next++ % pool.length]!);
      invalidOnSocket = 0;
      framesOnSocket = 0;
      return socket;
    };

    const frameLike = fc.record(
      {
        type: fc.constantFrom('request', 'response', 'error', 'Request'),
        id: fc.oneof(
          fc.integer({ min: -5, max: 100 }),
          fc.constantFrom(0xffffffff, 0x100000000, 2 ** 53, 0.5),
          fc.string(),
        ),
        verb: fc.oneof(
          fc.constantFrom('ping', 'auth', 'envelope', '__proto__'),
          fc.string({ maxLength: 40 }),
          fc.integer(),
        ),
        status: fc.oneof(fc.integer({ min: 50, max: 700 }), fc.string()),
        body: fc.jsonValue({ maxDepth: 4 }),
        extra: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    );
    const text = fc.oneof(
      fc.jsonValue({ maxDepth: 6 }).map((value) => JSON.stringify(value)),
      frameLike.map((value) => JSON.stringify(value)),
      fc
        .tuple(frameLike, fc.jsonValue({ maxDepth: 2 }))
        .map(([value, proto]) =>
          `{"__proto__":${JSON.stringify(proto)},${JSON.stringify(value).slice(1)}`.replace(
            ',}',
            '}',
          ),
        ),
    );

    await fc.assert(
      fc.asyncProperty(text, async (data) => {
        const target = await current();
        const expected = expectedFor(data);
        const before = replies(target).length;
        const id = sentinel++;
        target.sendRaw(data);
        target.sendRaw(JSON.stringify({ type: 'request', id, verb: 'ping' }));
        framesOnSocket += 2;
        if (expected.reply === 'error') invalidOnSocket += 1;
        await target.until(
          () => target.closeCode !== undefined || replies(target).some((frame) => frame.id === id),
          5_000,
          'the sentinel ping',
        );
        expect(target.closeCode).toBeUndefined();
        const got = replies(target).slice(before);
        expect(got).toHaveLength(expected.reply === 'none' ? 1 : 2);
        if (expected.reply !== 'none') expectReply(got[0], expected, data.slice(0, 100));
        expect(got.at(-1)).toMatchObject({ type: 'response', id, status: 200 });
      }),
      { numRuns: 200 },
    );
    await socket?.close();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await http(relay.url, 'GET', '/health')).status).toBe(200);
  });
});
