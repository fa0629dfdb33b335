import {
  fromBase64,
  remoteClientStore,
  toBase64,
  type AuthSigner,
  type ClientStore,
  type SignalEngine,
  type Transport,
  type SocketLike,
} from '@privcomm/client';
import {
  EngineRequestError,
  openRemoteEngine,
  type EngineFailure,
} from '@privcomm/engine-android/remote';

/**
 * The web build's side of `privcomm daemon --web-bridge` (apps/cli/src/daemon/web-bridge.ts): a
 * browser cannot run libsignal or keep a SQLite store, so the page's client core reaches the
 * daemon's engine, store and login key over one WebSocket on loopback, as JSON-RPC 2.0. The
 * private keys stay in the daemon. A development tool: the app on a phone never uses it.
 */

/** The subprotocol the bridge speaks (the daemon's BRIDGE_PROTOCOL). */
export const BRIDGE_PROTOCOL = 'privcomm-bridge.v1';

/** Where the bridge is and its per-run secret, as the daemon printed them. */
export interface BridgeAddress {
  readonly url: string;
  readonly secret: string;
}

/** The bridge refused, failed or went away; `code` is the daemon's stable code when it gave one. */
export class BridgeError extends Error {
  override readonly name = 'BridgeError';
  constructor(
    message: string,
    readonly code: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** The browser's WebSocket, as much as the bridge uses of it. */
interface BrowserSocket {
  readonly readyState: number;
  onopen: (() => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(): void;
}
type BrowserSocketConstructor = new (url: string, protocols: string[]) => BrowserSocket;

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

const NOT_CONNECTED =
  'start "privcomm daemon --web-bridge" and open the address it prints (with its #bridge=…&secret=…)';

/** A base64 answer of the bridge as bytes; anything else is the bridge's failure. */
const bytesFrom = (answer: unknown, method: string): Uint8Array => {
  try {
    if (typeof answer === 'string') return fromBase64(answer);
  } catch {
    // Reported below, as any other answer that is not base64.
  }
  throw new BridgeError(
    `the bridge answered ${method} with something else than base64`,
    'BRIDGE_FAILED',
  );
};

/** One connection to the bridge: calls its methods, and fails them all if it closes. */
export class BridgeConnection {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed: BridgeError | undefined;

  private constructor(private readonly socket: BrowserSocket) {
    socket.onmessage = (event) => this.answer(String(event.data));
    socket.onclose = (event) => {
      this.closed = new BridgeError(
        event.code === 4000
          ? 'another page connected to the bridge: this one is no longer in use; reload it to take over'
          : `the bridge closed (${event.code}): is "privcomm daemon --web-bridge" still running? Start it again and reload`,
        'BRIDGE_CLOSED',
      );
      for (const pending of this.pending.values()) pending.reject(this.closed);
      this.pending.clear();
    };
  }

  /** Opens the bridge; a refusal (wrong secret, another origin) or no daemon fails with what to do. */
  static connect(
    address: BridgeAddress,
    WebSocketImpl: BrowserSocketConstructor = globalThis.WebSocket as unknown as BrowserSocketConstructor,
  ): Promise<BridgeConnection> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocketImpl(address.url, [BRIDGE_PROTOCOL, `secret.${address.secret}`]);
      socket.onopen = () => resolve(new BridgeConnection(socket));
      // A browser says no more than "failed" (the status of a refused upgrade is not exposed).
      socket.onerror = () =>
        reject(
          new BridgeError(
            `cannot open the bridge at ${address.url}: it is not running, or refused this page (secret from another run?); ${NOT_CONNECTED}`,
            'BRIDGE_UNREACHABLE',
          ),
        );
    });
  }

  private answer(text: string): void {
    let answer: {
      id?: unknown;
      result?: unknown;
      error?: { message: string; data?: Record<string, unknown> };
    };
    try {
      answer = JSON.parse(text) ?? {};
    } catch {
      return; // The daemon writes JSON only; anything else answers no call.
    }
    const pending = typeof answer.id === 'number' ? this.pending.get(answer.id) : undefined;
    if (!pending) return;
    this.pending.delete(answer.id as number);
    if (answer.error === undefined) pending.resolve(answer.result);
    else {
      const code = answer.error.data?.code;
      pending.reject(
        new BridgeError(
          answer.error.message,
          typeof code === 'string' ? code : 'BRIDGE_FAILED',
          answer.error.data,
        ),
      );
    }
  }

  /** Calls one bridge method; resolves with its result (null for none). */
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /** The daemon's engine, through the engine's request protocol (as the phone's module). */
  openEngine(): Promise<SignalEngine> {
    return openRemoteEngine(async (op, engine, args) => {
      try {
        // JSON has no undefined: the engine's "nothing" (no identity yet) comes back as null.
        return (await this.call('engine', { op, engine, args })) ?? undefined;
      } catch (error) {
        const failure = error instanceof BridgeError ? error.data?.failure : undefined;
        if (failure !== undefined) throw new EngineRequestError(failure as EngineFailure);
        throw error;
      }
    }, 'profile');
  }

  /** The daemon's client store; every answer is checked by remoteClientStore. */
  store(): ClientStore {
    return remoteClientStore((method, args) => this.call('store', { method, args }));
  }

  /** The daemon's relay login key: it signs there, the page never holds it. */
  signer(): AuthSigner {
    return {
      publicKey: async () => bytesFrom(await this.call('signer.publicKey'), 'signer.publicKey'),
      sign: async (message) =>
        bytesFrom(await this.call('signer.sign', { message: toBase64(message) }), 'signer.sign'),
    };
  }

  /** One HTTP exchange with the relay, made by the daemon (see relayTransport). */
  async relayFetch(
    url: string,
    init: { method: string; headers: Record<string, string>; body?: string },
  ): Promise<{ status: number; text(): Promise<string> }> {
    const answer = await this.call('relay.fetch', {
      url,
      method: init.method,
      headers: init.headers,
      ...(init.body === undefined ? {} : { body: init.body }),
    });
    const { status, text } = (answer ?? {}) as { status?: unknown; text?: unknown };
    if (typeof status !== 'number' || typeof text !== 'string')
      throw new BridgeError(
        'the bridge answered relay.fetch with no status and text',
        'BRIDGE_FAILED',
      );
    return { status, text: async () => text };
  }
}

/**
 * The relay as the page reaches it: its HTTP through the daemon (the relay sends no CORS
 * headers, so a page could not read its answers), its WebSocket from the page itself (browsers
 * open those across origins, and the relay needs no more).
 */
export const relayTransport = (
  relayUrl: string,
  bridge: () => Promise<BridgeConnection>,
): Transport => ({
  relayUrl: relayUrl.replace(/\/+$/, ''),
  fetch: async (url, init) => (await bridge()).relayFetch(url, init),
  openSocket: (url) => new globalThis.WebSocket(url) as unknown as SocketLike,
});

/**
 * The bridge's address, from the page's `#bridge=URL&secret=HEX`: a fragment, which the browser
 * never sends to any server. It stays in the address bar (a reload finds it again) and is written
 * nowhere else; the secret is only good while that daemon runs. Undefined without one.
 */
export const bridgeAddressFromPage = (
  hash: string = globalThis.location?.hash ?? '',
): BridgeAddress | undefined => {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const url = params.get('bridge');
  const secret = params.get('secret');
  return url && secret ? { url, secret } : undefined;
};

/** Why the web build cannot start without a bridge address. */
export const noBridgeAddress = (): BridgeError =>
  new BridgeError(`The web build needs a bridge: ${NOT_CONNECTED}.`, 'BRIDGE_MISSING');
