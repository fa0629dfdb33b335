import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '@privcomm/wire';
import { createTestDatabase } from './support/database.ts';
import { TestDevice, TestSocket, http, type HttpResult } from './support/client.ts';
import { JWT_SECRET, startRelay, type TestRelay } from './support/relay.ts';
import { challengeKey, sealChallenge } from '../src/services/challenges.ts';
import type { AccountId, DeviceId } from '@privcomm/wire';

/**
 * Device authentication over real HTTP and WebSocket: the challenge/signature/token exchange,
 * single use of challenges (also across instances), and the rejection of every kind of bad token
 * on both the REST API and the socket, before anything is delivered.
 */

let relay: TestRelay;
let databaseUrl: string;
let drop: () => Promise<void>;
/** Extra relays some tests start on the same database; closed after the file. */
const extraRelays: TestRelay[] = [];

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  relay = await startRelay(databaseUrl);
});
afterAll(async () => {
  await Promise.all(extraRelays.map((extra) => extra.close()));
  await relay?.close();
  await drop?.();
});

const startExtraRelay = async (env: Record<string, string> = {}): Promise<TestRelay> => {
  const extra = await startRelay(databaseUrl, env);
  extraRelays.push(extra);
  return extra;
};

interface Identity {
  accountId: string;
  deviceId: number;
}

const requestChallenge = (device: Identity, baseUrl = relay.url): Promise<HttpResult> =>
  http(baseUrl, 'POST', '/v1/auth/challenge', {
    accountId: device.accountId,
    deviceId: device.deviceId,
  });

const submitToken = (
  device: Identity,
  nonce: string,
  signature: string,
  baseUrl = relay.url,
): Promise<HttpResult> =>
  http(baseUrl, 'POST', '/v1/auth/token', {
    accountId: device.accountId,
    deviceId: device.deviceId,
    nonce,
    signature,
  });

const newNonce = async (device: Identity, baseUrl = relay.url): Promise<string> => {
  const result = await requestChallenge(device, baseUrl);
  expect(result.status).toBe(200);
  return result.body.nonce as string;
};

const errorCode = (result: HttpResult): unknown => result.body?.error?.code;

const query = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
  relay.relay.context.database.pool.query<R>(text, values);

/** Rows that mark this nonce used (the table holds only the nonce's SHA-256). */
const usedRows = async (nonce: string): Promise<number> => {
  const result = await query<{ n: number }>(
    'SELECT count(*)::int AS n FROM used_challenges WHERE nonce_hash = $1',
    [createHash('sha256').update(Buffer.from(nonce, 'base64')).digest()],
  );
  return result.rows[0]?.n ?? -1;
};

/** Every row of the table, to show that issuing a challenge writes nothing. */
const allUsedRows = async (): Promise<number> => {
  const result = await query<{ n: number }>('SELECT count(*)::int AS n FROM used_challenges');
  return result.rows[0]?.n ?? -1;
};

/** A POST from a given loopback source address (127.0.0.x): another client, to the relay. */
const postFrom = (
  localAddress: string,
  baseUrl: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: any }> =>
  new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const request = httpRequest(
      `${baseUrl}${path}`,
      {
        method: 'POST',
        localAddress,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'),
          }),
        );
      },
    );
    request.on('error', reject);
    request.end(payload);
  });

const countQueued = (device: TestDevice): Promise<number> =>
  relay.relay.context.envelopes.countFor(device.accountId, device.deviceId);

const subjectOf = (device: Identity): string => `${device.accountId}.${device.deviceId}`;

// ---------------------------------------------------------------------------------------------
// Token forging (with jose), following services/tokens.ts: HS256, typ privcomm-device+jwt,
// iss privcomm-relay, aud privcomm-device, sub "<accountId>.<deviceId>", iat/exp/jti required.

const RELAY_SECRET = Buffer.from(JWT_SECRET, 'base64');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const b64url = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');

interface ForgeOptions {
  sub: string;
  secret?: Uint8Array;
  alg?: 'HS256' | 'HS384' | 'HS512';
  typ?: string;
  iss?: string;
  aud?: string;
  iat?: number;
  exp?: number;
}

const forge = (options: ForgeOptions): Promise<string> => {
  const iat = options.iat ?? nowSeconds();
  return new SignJWT({})
    .setProtectedHeader({ alg: options.alg ?? 'HS256', typ: options.typ ?? 'privcomm-device+jwt' })
    .setIssuer(options.iss ?? 'privcomm-relay')
    .setAudience(options.aud ?? 'privcomm-device')
    .setSubject(options.sub)
    .setIssuedAt(iat)
    .setExpirationTime(options.exp ?? iat + 300)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(options.secret ?? RELAY_SECRET);
};

/** An unsigned token (alg "none") with otherwise perfect claims. */
const unsignedToken = (sub: string): string => {
  const iat = nowSeconds();
  const header = b64url({ alg: 'none', typ: 'privcomm-device+jwt' });
  const payload = b64url({
    iss: 'privcomm-relay',
    aud: 'privcomm-device',
    sub,
    iat,
    exp: iat + 300,
    jti: randomBytes(16).toString('base64url'),
  });
  return `${header}.${payload}.`;
};

/** A real token whose payload is rewritten to name `sub`; the original signature is kept. */
const tamperedToken = (token: string, sub: string): string => {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8'));
  return `${header}.${b64url({ ...claims, sub })}.${signature}`;
};

/**
 * POSTs `body` to every base URL at once: all TCP connections are opened first, then every
 * request is written in one synchronous loop, so that they reach the relays together instead of
 * trickling in one fetch at a time. Answers come back in the order of `baseUrls`.
 */
const simultaneousPosts = async (
  baseUrls: string[],
  path: string,
  body: unknown,
): Promise<HttpResult[]> => {
  const payload = JSON.stringify(body);
  const sockets = await Promise.all(
    baseUrls.map(
      (baseUrl) =>
        new Promise<Socket>((resolve, reject) => {
          const url = new URL(baseUrl);
          const socket = connect(Number(url.port), url.hostname, () => resolve(socket));
          socket.once('error', reject);
        }),
    ),
  );
  const answers = sockets.map(
    (socket) =>
      new Promise<HttpResult>((resolve, reject) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.once('error', reject);
        socket.once('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          const split = raw.indexOf('\r\n\r\n');
          const head = raw.slice(0, split).split('\r\n');
          const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head[0] ?? '')?.[1]);
          const headers = new Headers();
          for (const line of head.slice(1)) {
            const colon = line.indexOf(':');
            headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
          }
          resolve({ status, headers, body: JSON.parse(raw.slice(split + 4)) });
        });
      }),
  );
  sockets.forEach((socket, i) => {
    const host = new URL(baseUrls[i] ?? '').host;
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`,
    );
  });
  return Promise.all(answers);
};

// ---------------------------------------------------------------------------------------------
// Socket probes

/** Opens a socket, sends `frame` as the first frame, and waits until the relay closes it. */
const firstFrameThenClose = async (
  frame: object | null,
  wsUrl = relay.wsUrl,
): Promise<TestSocket> => {
  const socket = await TestSocket.open(wsUrl, 200);
  if (frame !== null) socket.sendRaw(JSON.stringify(frame));
  await socket.until(() => socket.closeCode !== undefined, 10_000, 'the relay to close the socket');
  return socket;
};

const authFrame = (token: string | undefined): object => ({
  type: 'request',
  id: 1,
  verb: 'auth',
  ...(token === undefined ? {} : { body: { token } }),
});

/** The socket was closed 4401 and received nothing at all: no response, no envelope. */
const expectRejectedSocket = (socket: TestSocket): void => {
  expect(socket.closeCode).toBe(CLOSE_CODES.UNAUTHENTICATED);
  expect(socket.frames).toEqual([]);
  expect(socket.envelopes()).toEqual([]);
};

// ---------------------------------------------------------------------------------------------

describe('challenge and token', () => {
  it('exchanges a signed challenge for a token that works as a bearer and on the socket', async () => {
    const alice = await TestDevice.register(relay.url);
    const rowsBefore = await allUsedRows();
    const challenge = await requestChallenge(alice);
    expect(challenge.status).toBe(200);
    const nonce = challenge.body.nonce as string;
    expect(Buffer.from(nonce, 'base64')).toHaveLength(32);
    const challengeExpiry = Date.parse(challenge.body.expiresAt);
    expect(challengeExpiry).toBeGreaterThan(Date.now());
    expect(challengeExpiry).toBeLessThanOrEqual(Date.now() + 120_000);
    // Issuing a challenge writes nothing to the database.
    expect(await allUsedRows()).toBe(rowsBefore);

    const result = await submitToken(alice, nonce, alice.signChallenge(nonce));
    expect(result.status).toBe(200);
    const token = result.body.token as string;
    // Using it leaves its hash, no account or device, until it expires.
    expect(await usedRows(nonce)).toBe(1);
    const columns = await query<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'used_challenges' ORDER BY 1",
    );
    expect(columns.rows.map((row) => row.column_name)).toEqual(['expires_at', 'nonce_hash']);
    // UNLOGGED: its rows never reach the write-ahead log.
    const persistence = await query<{ relpersistence: string }>(
      "SELECT relpersistence FROM pg_class WHERE relname = 'used_challenges'",
    );
    expect(persistence.rows[0]?.relpersistence).toBe('u');

    const header = decodeProtectedHeader(token);
    expect(header).toMatchObject({ alg: 'HS256', typ: 'privcomm-device+jwt' });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({
      iss: 'privcomm-relay',
      aud: 'privcomm-device',
      sub: subjectOf(alice),
    });
    expect(typeof claims.jti).toBe('string');
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(300);
    expect(result.body.expiresAt).toBe(new Date((claims.exp ?? 0) * 1000).toISOString());

    const devices = await http(relay.url, 'GET', '/v1/devices', undefined, token);
    expect(devices.status).toBe(200);
    expect(devices.body.devices).toEqual([
      expect.objectContaining({ deviceId: alice.deviceId, registrationId: alice.registrationId }),
    ]);

    const socket = await TestSocket.open(relay.wsUrl);
    const auth = await socket.request('auth', { token });
    expect(auth).toMatchObject({
      status: 200,
      body: { accountId: alice.accountId, deviceId: alice.deviceId },
    });
    expect(await socket.request('ping')).toMatchObject({ status: 200 });
    await socket.close();
  });

  it('refuses a replayed challenge with CHALLENGE_INVALID', async () => {
    const alice = await TestDevice.register(relay.url);
    const nonce = await newNonce(alice);
    const signature = alice.signChallenge(nonce);
    const first = await submitToken(alice, nonce, signature);
    expect(first.status).toBe(200);
    const replay = await submitToken(alice, nonce, signature);
    expect(replay.status).toBe(401);
    expect(errorCode(replay)).toBe('CHALLENGE_INVALID');
    expect(replay.body.token).toBeUndefined();
  });

  it('refuses a nonce issued to another device, and the nonce still works for its own device', async () => {
    const alice = await TestDevice.register(relay.url);
    const mallory = await TestDevice.register(relay.url);
    const sibling = await TestDevice.link(alice);
    const nonce = await newNonce(alice);

    // Another account's device, correctly signing its own identity with its own key.
    const stolen = await submitToken(mallory, nonce, mallory.signChallenge(nonce));
    expect(stolen.status).toBe(401);
    expect(errorCode(stolen)).toBe('CHALLENGE_INVALID');
    // Another device of the same account.
    const sideways = await submitToken(sibling, nonce, sibling.signChallenge(nonce));
    expect(sideways.status).toBe(401);
    expect(errorCode(sideways)).toBe('CHALLENGE_INVALID');
    expect(await usedRows(nonce)).toBe(0);

    const own = await submitToken(alice, nonce, alice.signChallenge(nonce));
    expect(own.status).toBe(200);
    expect(decodeJwt(own.body.token).sub).toBe(subjectOf(alice));
  });

  it('refuses a wrong signature with SIGNATURE_INVALID, which does not use the nonce up', async () => {
    const alice = await TestDevice.register(relay.url);
    const bob = await TestDevice.register(relay.url);
    const wrongSignatures: [string, (nonce: string) => string][] = [
      [
        'signed with another key',
        (nonce) => bob.signChallenge(nonce, alice.accountId, alice.deviceId),
      ],
      [
        'signed over another account id',
        (nonce) => alice.signChallenge(nonce, bob.accountId, alice.deviceId),
      ],
      ['signed over another device id', (nonce) => alice.signChallenge(nonce, alice.accountId, 2)],
      ['signed over another nonce', () => alice.signChallenge(randomBytes(32).toString('base64'))],
      ['not a signature at all', () => Buffer.alloc(64).toString('base64')],
    ];
    for (const [what, makeSignature] of wrongSignatures) {
      const nonce = await newNonce(alice);
      const wrong = await submitToken(alice, nonce, makeSignature(nonce));
      expect({ what, status: wrong.status, code: errorCode(wrong) }).toEqual({
        what,
        status: 401,
        code: 'SIGNATURE_INVALID',
      });
      expect(await usedRows(nonce)).toBe(0);
      // Whoever sent the wrong signature cannot spend the device's nonce: it still works, once.
      const right = await submitToken(alice, nonce, alice.signChallenge(nonce));
      expect({ what, status: right.status }).toEqual({ what, status: 200 });
      const replay = await submitToken(alice, nonce, alice.signChallenge(nonce));
      expect({ what, status: replay.status, code: errorCode(replay) }).toEqual({
        what,
        status: 401,
        code: 'CHALLENGE_INVALID',
      });
    }
  });

  it('refuses malformed nonces and signatures with 400 before touching the challenge', async () => {
    const alice = await TestDevice.register(relay.url);
    const nonce = await newNonce(alice);
    const shortSignature = await submitToken(alice, nonce, 'A'.repeat(88));
    expect(shortSignature.status).toBe(400);
    expect(errorCode(shortSignature)).toBe('VALIDATION_FAILED');
    const badNonce = await submitToken(alice, '!'.repeat(44), alice.signChallenge(nonce));
    expect(badNonce.status).toBe(400);
    expect(errorCode(badNonce)).toBe('VALIDATION_FAILED');
    expect(await usedRows(nonce)).toBe(0);
    expect((await submitToken(alice, nonce, alice.signChallenge(nonce))).status).toBe(200);
  });

  it('refuses an expired, forged or altered challenge with CHALLENGE_INVALID', async () => {
    const alice = await TestDevice.register(relay.url);
    const key = challengeKey(Buffer.from(JWT_SECRET, 'base64'));
    const device = [alice.accountId as AccountId, alice.deviceId as DeviceId] as const;
    const now = Math.floor(Date.now() / 1000);
    const altered = Buffer.from(await newNonce(alice), 'base64');
    altered.writeUInt32BE(altered.readUInt32BE(0) + 3600, 0); // a later expiry, same tag
    const nonces: [string, Buffer][] = [
      ['sealed by the relay, expired a second ago', sealChallenge(key, ...device, now - 1)],
      ['sealed with another key', sealChallenge(randomBytes(32), ...device, now + 60)],
      ['with its expiry moved', altered],
      ['random bytes', randomBytes(32)],
    ];
    for (const [what, nonce] of nonces) {
      const base64 = nonce.toString('base64');
      const refused = await submitToken(alice, base64, alice.signChallenge(base64));
      expect({ what, status: refused.status, code: errorCode(refused) }).toEqual({
        what,
        status: 401,
        code: 'CHALLENGE_INVALID',
      });
    }
    // Control: the same construction with a future expiry is accepted.
    const valid = sealChallenge(key, ...device, now + 30).toString('base64');
    expect((await submitToken(alice, valid, alice.signChallenge(valid))).status).toBe(200);
  });

  it('answers DEVICE_NOT_FOUND for a challenge for an unknown device or account', async () => {
    const alice = await TestDevice.register(relay.url);
    const unknownDevice = await requestChallenge({ accountId: alice.accountId, deviceId: 5 });
    expect(unknownDevice.status).toBe(404);
    expect(errorCode(unknownDevice)).toBe('DEVICE_NOT_FOUND');
    const unknownAccount = await requestChallenge({ accountId: randomUUID(), deviceId: 1 });
    expect(unknownAccount.status).toBe(404);
    expect(errorCode(unknownAccount)).toBe('DEVICE_NOT_FOUND');
  });

  it('records last-seen as a day, YYYY-MM-DD, updated by authentication', async () => {
    const alice = await TestDevice.register(relay.url);
    const column = await query<{ data_type: string }>(
      `SELECT data_type FROM information_schema.columns
       WHERE table_name = 'devices' AND column_name = 'last_seen_on'`,
    );
    expect(column.rows[0]?.data_type).toBe('date');

    await query("UPDATE devices SET last_seen_on = '2000-01-01' WHERE account_id = $1", [
      alice.accountId,
    ]);
    const before = await alice.request('GET', '/v1/devices');
    expect(before.body.devices[0]?.lastSeenOn).toBe('2000-01-01');

    await alice.authenticate();
    const today = await query<{ day: string }>('SELECT current_date::text AS day');
    const after = await alice.request('GET', '/v1/devices');
    expect(after.status).toBe(200);
    const lastSeenOn = after.body.devices[0]?.lastSeenOn;
    expect(lastSeenOn).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(lastSeenOn).toBe(today.rows[0]?.day);
    expect(after.body.devices[0]?.createdOn).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });
});

describe('token matrix', () => {
  let alice: TestDevice;
  let bob: TestDevice;

  beforeAll(async () => {
    alice = await TestDevice.register(relay.url);
    bob = await TestDevice.register(relay.url);
    // Bob has something waiting: a socket that slipped through would be handed it.
    const sent = await alice.send(bob.accountId, [bob.address()], 'for bob only');
    expect(sent.status).toBe(200);
  });

  const badTokens: [string, () => Promise<string> | string][] = [
    ['alg "none"', () => unsignedToken(subjectOf(bob))],
    ['HS256 with another secret', () => forge({ sub: subjectOf(bob), secret: randomBytes(32) })],
    ['HS512 with the relay secret', () => forge({ sub: subjectOf(bob), alg: 'HS512' })],
    [
      'expired (iat and exp in the past)',
      () => forge({ sub: subjectOf(bob), iat: nowSeconds() - 900, exp: nowSeconds() - 600 }),
    ],
    [
      'older than the token lifetime though not expired',
      () => forge({ sub: subjectOf(bob), iat: nowSeconds() - 900, exp: nowSeconds() + 300 }),
    ],
    ['wrong audience', () => forge({ sub: subjectOf(bob), aud: 'privcomm-admin' })],
    ['wrong issuer', () => forge({ sub: subjectOf(bob), iss: 'someone-else' })],
    ['wrong typ header', () => forge({ sub: subjectOf(bob), typ: 'JWT' })],
    [
      'tampered payload (sub changed to another device)',
      () => tamperedToken(alice.token, subjectOf(bob)),
    ],
    ['garbage string', () => 'garbage'],
    ['three garbage segments', () => 'a.b.c'],
    ['malformed subject', () => forge({ sub: bob.accountId })],
    [
      'a device that never existed',
      () => forge({ sub: subjectOf({ accountId: bob.accountId, deviceId: 7 }) }),
    ],
  ];

  it.each(badTokens)(
    '%s: 401 on REST, close 4401 on the socket, nothing delivered',
    async (_name, make) => {
      const token = await make();
      const rest = await http(relay.url, 'GET', '/v1/devices', undefined, token);
      expect(rest.status).toBe(401);
      expect(errorCode(rest)).toBe('UNAUTHENTICATED');
      expect(rest.body.devices).toBeUndefined();

      expectRejectedSocket(await firstFrameThenClose(authFrame(token)));
      expect(await countQueued(bob)).toBe(1);
    },
  );

  it('missing credentials: 401 on REST, close 4401 on the socket, nothing delivered', async () => {
    const missing = await http(relay.url, 'GET', '/v1/devices');
    expect(missing.status).toBe(401);
    expect(errorCode(missing)).toBe('UNAUTHENTICATED');
    for (const authorization of [
      'Bearer',
      'Bearer ',
      `Basic ${bob.token}`,
      `bearer${bob.token}`,
      'Bearer a b',
    ]) {
      const response = await fetch(`${relay.url}/v1/devices`, { headers: { authorization } });
      expect({ authorization, status: response.status }).toEqual({ authorization, status: 401 });
      const body = (await response.json()) as { error: { code: string } };
      expect(body.error.code).toBe('UNAUTHENTICATED');
    }
    expectRejectedSocket(await firstFrameThenClose(authFrame(undefined)));
    expectRejectedSocket(await firstFrameThenClose(authFrame('')));
    expectRejectedSocket(
      await firstFrameThenClose({
        type: 'request',
        id: 1,
        verb: 'auth',
        body: { token: bob.token, extra: 1 },
      }),
    );
    expect(await countQueued(bob)).toBe(1);
  });

  it('control: a token forged with the relay secret and every claim right is accepted and delivers', async () => {
    // Shows that the forging above differs from a valid token only in the one thing each case
    // names, and that an authenticated socket would indeed have been handed the envelope.
    const token = await forge({ sub: subjectOf(bob) });
    const rest = await http(relay.url, 'GET', '/v1/devices', undefined, token);
    expect(rest.status).toBe(200);
    const socket = await TestSocket.open(relay.wsUrl, null);
    expect((await socket.request('auth', { token })).status).toBe(200);
    await socket.until(() => socket.envelopes().length === 1, 5_000, 'the queued envelope');
    expect(socket.texts()).toEqual(['for bob only']);
    await socket.close();
    expect(await countQueued(bob)).toBe(1); // not acknowledged, so still queued
  });

  it('refuses the token of a removed device, even after a new device is linked', async () => {
    const primary = await TestDevice.register(relay.url);
    const linked = await TestDevice.link(primary);
    const token = linked.token;
    expect((await linked.request('GET', '/v1/devices')).status).toBe(200);
    const live = await TestSocket.connect(relay.wsUrl, linked);

    const removed = await primary.request('DELETE', `/v1/devices/${linked.deviceId}`);
    expect(removed.status).toBe(204);
    await live.until(() => live.closeCode !== undefined, 5_000, 'the live socket to close');
    expect(live.closeCode).toBe(CLOSE_CODES.UNAUTHENTICATED);

    const rest = await http(relay.url, 'GET', '/v1/devices', undefined, token);
    expect(rest.status).toBe(401);
    expect(errorCode(rest)).toBe('UNAUTHENTICATED');
    expectRejectedSocket(await firstFrameThenClose(authFrame(token)));
    const challenge = await requestChallenge(linked);
    expect(challenge.status).toBe(404);
    expect(errorCode(challenge)).toBe('DEVICE_NOT_FOUND');

    // Device ids are never reused, so the old token cannot come back to life.
    const relinked = await TestDevice.link(primary);
    expect(relinked.deviceId).not.toBe(linked.deviceId);
    const again = await http(relay.url, 'GET', '/v1/devices', undefined, token);
    expect(again.status).toBe(401);
    expect(errorCode(again)).toBe('UNAUTHENTICATED');
  });
});

describe('challenges across instances', () => {
  it('of 50 parallel submissions of one signed challenge on three relays, exactly one wins', async () => {
    const second = await startExtraRelay();
    const third = await startExtraRelay();
    const relays = [relay.url, second.url, third.url];
    const device = await TestDevice.register(relay.url);
    const nonce = await newNonce(device);
    const signature = device.signChallenge(nonce);
    const results = await simultaneousPosts(
      Array.from({ length: 50 }, (_, i) => relays[i % relays.length] as string),
      '/v1/auth/token',
      { accountId: device.accountId, deviceId: device.deviceId, nonce, signature },
    );
    const winners = results.filter((result) => result.status === 200);
    const losers = results.filter((result) => result.status !== 200);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(49);
    for (const loser of losers) {
      expect(loser.status).toBe(401);
      expect(errorCode(loser)).toBe('CHALLENGE_INVALID');
    }
    // The one token is good on every instance (they share the secret); the challenge, replayed
    // later on any of them, gives nothing more.
    const token = winners[0]?.body.token as string;
    for (const url of relays) {
      expect((await http(url, 'GET', '/v1/devices', undefined, token)).status).toBe(200);
      const replay = await http(url, 'POST', '/v1/auth/token', {
        accountId: device.accountId,
        deviceId: device.deviceId,
        nonce,
        signature,
      });
      expect(errorCode(replay)).toBe('CHALLENGE_INVALID');
    }
  });
});

describe('socket authentication', () => {
  let quick: TestRelay;
  let alice: TestDevice;
  let bob: TestDevice;

  beforeAll(async () => {
    quick = await startExtraRelay({ WS_AUTH_TIMEOUT_MS: '300' });
    alice = await TestDevice.register(relay.url);
    bob = await TestDevice.register(relay.url);
    const sent = await alice.send(bob.accountId, [bob.address()], 'queued');
    expect(sent.status).toBe(200);
  });

  it('closes a socket that sends no auth frame within the deadline with 4408', async () => {
    const socket = await firstFrameThenClose(null, quick.wsUrl);
    expect(socket.closeCode).toBe(CLOSE_CODES.TIMEOUT);
    expect(socket.frames).toEqual([]);
    expect(await countQueued(bob)).toBe(1);
  });

  it('closes a socket whose first frame is not auth with 4401', async () => {
    // On the relay with the default 5 s deadline: 300 ms could run out on a busy machine first.
    expectRejectedSocket(await firstFrameThenClose({ type: 'request', id: 1, verb: 'ping' }));
    expectRejectedSocket(await firstFrameThenClose({ type: 'response', id: 1, status: 200 }));
    expect(await countQueued(bob)).toBe(1);
  });

  it('closes a socket that authenticates with a bad token with 4401, delivering nothing', async () => {
    const forged = await forge({ sub: subjectOf(bob), secret: randomBytes(32) });
    expectRejectedSocket(await firstFrameThenClose(authFrame(forged)));
    expectRejectedSocket(
      await firstFrameThenClose(authFrame(tamperedToken(alice.token, subjectOf(bob)))),
    );
    expect(await countQueued(bob)).toBe(1);
  });

  it('delivers the queued envelope once the socket authenticates properly', async () => {
    const socket = await TestSocket.connect(relay.wsUrl, bob);
    await socket.until(() => socket.envelopes().length === 1, 5_000, 'the queued envelope');
    expect(socket.texts()).toEqual(['queued']);
    await expect.poll(() => countQueued(bob)).toBe(0);
    await socket.close();
  });
});

describe('rate limiting', () => {
  it('answers 429 RATE_LIMITED with Retry-After on the 4th login request from one address', async () => {
    const limited = await startExtraRelay({ RATE_LIMIT_LOGIN: '3/600' });
    const device = await TestDevice.register(relay.url);
    const other = await TestDevice.register(relay.url);
    for (let i = 0; i < 3; i += 1) {
      expect((await requestChallenge(device, limited.url)).status).toBe(200);
    }
    // The bucket is the address's, not the device's: another device from here is refused too.
    const fourth = await requestChallenge(other, limited.url);
    expect(fourth.status).toBe(429);
    expect(errorCode(fourth)).toBe('RATE_LIMITED');
    const retryAfter = fourth.headers.get('retry-after');
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    // 3/600 is a burst of 3 with one token back every 600 s.
    expect(Number(retryAfter)).toBeLessThanOrEqual(600);
    expect(fourth.body.retryAfterSeconds).toBe(Number(retryAfter));
    // The token endpoint shares the address's budget.
    const token = await submitToken(
      device,
      randomBytes(32).toString('base64'),
      Buffer.alloc(64).toString('base64'),
      limited.url,
    );
    expect(token.status).toBe(429);
    expect(errorCode(token)).toBe('RATE_LIMITED');
    // Another address has its own budget.
    const elsewhere = await postFrom('127.0.0.2', limited.url, '/v1/auth/challenge', {
      accountId: other.accountId,
      deviceId: other.deviceId,
    });
    expect(elsewhere.status).toBe(200);
  });

  it("a stranger hammering a victim's challenges and tokens does not stop the victim logging in", async () => {
    // The limits in force before this test's fix, per device, and the new one per address.
    const limited = await startExtraRelay({ RATE_LIMIT_AUTH: '8/600', RATE_LIMIT_LOGIN: '8/600' });
    const victim = await TestDevice.register(relay.url);
    const ids = { accountId: victim.accountId, deviceId: victim.deviceId };
    const strangerResults: number[] = [];
    for (let i = 0; i < 20; i += 1) {
      const challenge = await postFrom('127.0.0.3', limited.url, '/v1/auth/challenge', ids);
      strangerResults.push(challenge.status);
      const nonce =
        (challenge.body?.nonce as string | undefined) ?? randomBytes(32).toString('base64');
      const token = await postFrom('127.0.0.3', limited.url, '/v1/auth/token', {
        ...ids,
        nonce,
        signature: Buffer.alloc(64, 7).toString('base64'),
      });
      strangerResults.push(token.status);
    }
    // The stranger was stopped...
    expect(strangerResults).toContain(429);
    // ...and the victim, from its own address, logs in at once, more than once.
    for (let i = 0; i < 3; i += 1) {
      const challenge = await postFrom('127.0.0.4', limited.url, '/v1/auth/challenge', ids);
      expect(challenge.status).toBe(200);
      const nonce = challenge.body.nonce as string;
      const token = await postFrom('127.0.0.4', limited.url, '/v1/auth/token', {
        ...ids,
        nonce,
        signature: victim.signChallenge(nonce),
      });
      expect(token.status).toBe(200);
    }
  });
});

describe('logging', () => {
  it('never writes tokens, nonces, signatures, keys or account ids to the log', async () => {
    const device = await TestDevice.register(relay.url);
    const nonce = await newNonce(device);
    const signature = device.signChallenge(nonce);
    expect((await submitToken(device, nonce, signature)).status).toBe(200);
    const replayed = await submitToken(device, nonce, signature);
    expect(replayed.status).toBe(401);
    const badNonce = await newNonce(device);
    const badSignature = Buffer.alloc(64, 1).toString('base64');
    expect((await submitToken(device, badNonce, badSignature)).status).toBe(401);
    const forged = await forge({ sub: subjectOf(device), secret: randomBytes(32) });
    expectRejectedSocket(await firstFrameThenClose(authFrame(forged)));
    const socket = await TestSocket.connect(relay.wsUrl, device);
    await socket.close();

    const logs = relay.logs.join('\n');
    expect(logs.length).toBeGreaterThan(0);
    const secrets = {
      accountId: device.accountId,
      token: device.token,
      tokenSignature: device.token.split('.')[2] ?? '',
      forged,
      nonce,
      badNonce,
      signature,
      authKey: device.authPublic.toString('base64'),
      jwtSecret: JWT_SECRET,
    };
    for (const [name, value] of Object.entries(secrets)) {
      expect(value.length).toBeGreaterThan(0);
      expect({ name, logged: logs.includes(value) }).toEqual({ name, logged: false });
    }
  });
});
