import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomInt,
  sign,
  type KeyObject,
} from 'node:crypto';
import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';
import {
  authChallengeMessage,
  BINARY_FRAMES_QUERY,
  SOCKET_LOGIN_QUERY,
  socketAuthMessage,
  joinBinaryFrame,
  splitBinaryFrame,
  type CreateAccountRequest,
  type Envelope,
  type KemPreKey,
  type PreKey,
  type SignedPreKey,
} from '@privcomm/wire';

/**
 * A device as the relay sees it: public keys of the right shapes (random bytes: the relay never
 * interprets them), a real Ed25519 authentication key, and helpers for HTTP and the socket.
 */

const b64 = (bytes: Buffer): string => bytes.toString('base64');
export const ecKey = (): string => b64(Buffer.concat([Buffer.from([5]), randomBytes(32)]));
export const signature = (): string => b64(randomBytes(64));
export const kemKey = (): string => b64(Buffer.concat([Buffer.from([8]), randomBytes(1568)]));

export const signedPreKey = (keyId = 1): SignedPreKey => ({
  keyId,
  publicKey: ecKey(),
  signature: signature(),
});
export const kemPreKey = (keyId = 1): KemPreKey => ({
  keyId,
  publicKey: kemKey(),
  signature: signature(),
});
export const preKeys = (from: number, count: number): PreKey[] =>
  Array.from({ length: count }, (_, i) => ({ keyId: from + i, publicKey: ecKey() }));
export const kemPreKeys = (from: number, count: number): KemPreKey[] =>
  Array.from({ length: count }, (_, i) => kemPreKey(from + i));

export interface HttpResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** A request from a chosen loopback source address (127.0.0.x): node:http, as fetch cannot bind. */
const requestFrom = (
  from: string,
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<{ status: number; text: string; headers: Headers }> =>
  new Promise((resolve, reject) => {
    const sent = httpRequest(
      url,
      {
        method,
        localAddress: from,
        agent: false,
        headers: {
          ...headers,
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
        },
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(answer.headers)) {
            if (typeof value === 'string') answerHeaders.set(name, value);
          }
          resolve({
            status: answer.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            headers: answerHeaders,
          });
        });
      },
    );
    sent.on('error', reject);
    sent.end(body);
  });

/** An HTTP request to the relay; from the loopback address `from` if given (another client). */
export const http = async <T = any>(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  from?: string,
): Promise<HttpResult<T>> => {
  const headers: Record<string, string> = {
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
  };
  const payload =
    body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  let status: number;
  let text: string;
  let answerHeaders: Headers;
  if (from === undefined) {
    const response = await fetch(`${baseUrl}${path}`, { method, headers, body: payload });
    ({ status, headers: answerHeaders } = response);
    text = await response.text();
  } else {
    ({
      status,
      text,
      headers: answerHeaders,
    } = await requestFrom(from, `${baseUrl}${path}`, method, headers, payload));
  }
  let parsed: unknown = text;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status, body: parsed as T, headers: answerHeaders };
};

export class TestDevice {
  readonly authPrivate: KeyObject;
  readonly authPublic: Buffer;
  readonly registrationId: number;
  accountId = '';
  deviceId = 0;
  token = '';

  /**
   * @param from the loopback address (127.0.0.x) this device's HTTP requests come from, to be
   * another client to the relay's per-address limits; the default route's otherwise.
   * @param existing a device already in the database (the benchmark creates its accounts there):
   * its key and registration id instead of new ones.
   */
  constructor(
    public baseUrl: string,
    readonly from?: string,
    existing?: { authPrivate: KeyObject; registrationId: number },
  ) {
    this.authPrivate = existing?.authPrivate ?? generateKeyPairSync('ed25519').privateKey;
    this.registrationId = existing?.registrationId ?? randomInt(1, 16381);
    // DER, not JWK: a JWK export of a generated key can deadlock Node 20 (at-rest-share.ts).
    this.authPublic = createPublicKey(this.authPrivate)
      .export({ format: 'der', type: 'spki' })
      .subarray(-32);
  }

  newDeviceFields() {
    return {
      registrationId: this.registrationId,
      authKey: b64(this.authPublic),
      signedPreKey: signedPreKey(),
      kyberLastResortPreKey: kemPreKey(1000),
    };
  }

  registrationBody(extra: Partial<CreateAccountRequest> = {}): CreateAccountRequest {
    return { identityKey: ecKey(), ...this.newDeviceFields(), ...extra };
  }

  /** Registers a new account with this device as its primary, then authenticates. */
  static async register(
    baseUrl: string,
    extra: Partial<CreateAccountRequest> = {},
    from?: string,
  ): Promise<TestDevice> {
    const device = new TestDevice(baseUrl, from);
    const created = await device.post('/v1/accounts', device.registrationBody(extra));
    if (created.status !== 200)
      throw new Error(`register: ${created.status} ${JSON.stringify(created.body)}`);
    device.accountId = created.body.accountId;
    device.deviceId = created.body.deviceId;
    await device.authenticate();
    return device;
  }

  /** Links a new device to `primary`'s account through a link token, then authenticates. */
  static async link(primary: TestDevice): Promise<TestDevice> {
    const token = await primary.request('POST', '/v1/devices/link-tokens');
    if (token.status !== 200) throw new Error(`link token: ${token.status}`);
    const device = new TestDevice(primary.baseUrl);
    const linked = await http(primary.baseUrl, 'POST', '/v1/devices', {
      linkToken: token.body.linkToken,
      ...device.newDeviceFields(),
    });
    if (linked.status !== 200)
      throw new Error(`link: ${linked.status} ${JSON.stringify(linked.body)}`);
    device.accountId = linked.body.accountId;
    device.deviceId = linked.body.deviceId;
    await device.authenticate();
    return device;
  }

  signChallenge(nonce: string, accountId = this.accountId, deviceId = this.deviceId): string {
    const message = authChallengeMessage(accountId, deviceId, Buffer.from(nonce, 'base64'));
    return b64(sign(null, message, this.authPrivate));
  }

  /** The body of `auth` by signature over a socket's challenge nonce (base64). */
  socketLogin(
    nonce: string,
    accountId = this.accountId,
    deviceId = this.deviceId,
  ): { accountId: string; deviceId: number; signature: string } {
    const message = socketAuthMessage(accountId, deviceId, Buffer.from(nonce, 'base64'));
    return { accountId, deviceId, signature: b64(sign(null, message, this.authPrivate)) };
  }

  async challenge(): Promise<string> {
    const result = await this.post('/v1/auth/challenge', {
      accountId: this.accountId,
      deviceId: this.deviceId,
    });
    if (result.status !== 200) throw new Error(`challenge: ${result.status}`);
    return result.body.nonce as string;
  }

  async authenticate(): Promise<string> {
    const nonce = await this.challenge();
    const result = await this.post('/v1/auth/token', {
      accountId: this.accountId,
      deviceId: this.deviceId,
      nonce,
      signature: this.signChallenge(nonce),
    });
    if (result.status !== 200)
      throw new Error(`token: ${result.status} ${JSON.stringify(result.body)}`);
    this.token = result.body.token;
    return this.token;
  }

  request<T = any>(method: string, path: string, body?: unknown): Promise<HttpResult<T>> {
    return http<T>(this.baseUrl, method, path, body, this.token, this.from);
  }

  /** A POST without the token (registration, login), from this device's address. */
  post(path: string, body: unknown): Promise<HttpResult> {
    return http(this.baseUrl, 'POST', path, body, undefined, this.from);
  }

  /** Sends `text` (as opaque bytes) to every given device of `recipient`. */
  send(
    recipient: string,
    devices: { deviceId: number; registrationId: number }[],
    content: string | Buffer,
    options: { online?: boolean; urgent?: boolean } = {},
  ): Promise<HttpResult> {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    return this.request('PUT', `/v1/messages/${recipient}`, {
      messages: devices.map((device) => ({ ...device, type: 1, content: b64(bytes) })),
      ...options,
    });
  }

  address(): { deviceId: number; registrationId: number } {
    return { deviceId: this.deviceId, registrationId: this.registrationId };
  }
}

export interface ServerRequest {
  id: number;
  verb: string;
  body?: Envelope;
}

/**
 * A client socket that records what the relay sends. Envelopes are answered automatically with
 * `ackStatus` unless it is null (then the test answers, or never does). A binary frame is
 * recorded as its JSON with `binary: true`, its content (an envelope's) back in base64.
 */
export class TestSocket {
  readonly requests: ServerRequest[] = [];
  readonly frames: any[] = [];
  closeCode: number | undefined;
  closeReason = '';
  readonly closed: Promise<number>;
  private waiters: (() => void)[] = [];
  private nextId = 1;

  constructor(
    readonly ws: WebSocket,
    public ackStatus: number | null = 200,
  ) {
    ws.on('message', (data: Buffer, isBinary) => {
      const frame = isBinary ? TestSocket.fromBinary(data) : JSON.parse(data.toString());
      this.frames.push(frame);
      if (frame.type === 'request') {
        this.requests.push(frame);
        if (frame.verb === 'envelope' && this.ackStatus !== null)
          this.respond(frame.id, this.ackStatus);
      }
      this.notify();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.notify();
        resolve(code);
      }),
    );
  }

  private static fromBinary(data: Buffer): any {
    const split = splitBinaryFrame(data);
    if (!split) throw new Error('malformed binary frame from the relay');
    const frame = JSON.parse(split.header);
    if (frame.verb !== 'envelope' || frame.body.content !== split.tail.length) {
      throw new Error(`unexpected binary frame ${split.header}`);
    }
    return {
      ...frame,
      binary: true,
      body: { ...frame.body, content: Buffer.from(split.tail).toString('base64') },
    };
  }

  /**
   * @param binary open the socket with BINARY_FRAMES_QUERY
   * @param login open it with SOCKET_LOGIN_QUERY (the relay's first frame is `auth.challenge`)
   */
  static open(
    wsUrl: string,
    ackStatus: number | null = 200,
    { binary = false, login = false } = {},
  ): Promise<TestSocket> {
    const query = [binary && BINARY_FRAMES_QUERY, login && SOCKET_LOGIN_QUERY].filter(Boolean);
    const ws = new WebSocket(query.length > 0 ? `${wsUrl}?${query.join('&')}` : wsUrl);
    const socket = new TestSocket(ws, ackStatus);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(socket));
      ws.once('error', reject);
    });
  }

  /** Opens a socket and authenticates it as `device`: with its token, or with `login` by signature. */
  static async connect(
    wsUrl: string,
    device: TestDevice,
    ackStatus: number | null = 200,
    options: { binary?: boolean; login?: boolean } = {},
  ): Promise<TestSocket> {
    const socket = await TestSocket.open(wsUrl, ackStatus, options);
    const credentials = options.login
      ? device.socketLogin(await socket.challenge())
      : { token: device.token };
    const response = await socket.request('auth', credentials);
    if (response.status !== 200) throw new Error(`auth: ${response.status}`);
    socket.authAnswer = response.body;
    return socket;
  }

  /** The nonce of the relay's `auth.challenge`, once it came (a socket opened with `login`). */
  async challenge(): Promise<string> {
    await this.until(
      () => this.requests.some((r) => r.verb === 'auth.challenge'),
      5_000,
      'auth.challenge',
    );
    return (this.requests.find((r) => r.verb === 'auth.challenge')?.body as any).nonce;
  }

  /** The relay's answer to `auth` (with `frames: 'binary'` if it took binary frames). */
  authAnswer: any;

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((wake) => wake());
  }

  /** Waits until `predicate` holds, re-checking on every frame or close. */
  async until(predicate: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  envelopes(): Envelope[] {
    return this.requests.filter((r) => r.verb === 'envelope').map((r) => r.body as Envelope);
  }

  texts(): string[] {
    return this.envelopes().map((e) => Buffer.from(e.content, 'base64').toString());
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  respond(id: number, status: number): void {
    this.ws.send(JSON.stringify({ type: 'response', id, status }));
  }

  /**
   * A request and its response. With `contents`, a binary frame: `body` then holds each content's
   * length where its content goes, and the contents follow in that order.
   */
  async request(
    verb: string,
    body?: unknown,
    contents?: readonly Uint8Array[],
  ): Promise<{ status: number; body?: any }> {
    const id = this.nextId++;
    const json = JSON.stringify({
      type: 'request',
      id,
      verb,
      ...(body === undefined ? {} : { body }),
    });
    this.ws.send(contents === undefined ? json : joinBinaryFrame(json, contents));
    let found: any;
    await this.until(
      () => {
        found = this.frames.find((f) => f.type === 'response' && f.id === id);
        return found !== undefined || this.closeCode !== undefined;
      },
      5_000,
      `response to ${verb}`,
    );
    if (!found) return { status: this.closeCode ?? 0 };
    return found;
  }

  close(): Promise<number> {
    this.ws.close(1000);
    return this.closed;
  }
}
