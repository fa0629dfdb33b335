import { ClientError } from './errors.ts';

/**
 * How the core reaches the relay. Both halves are injected: `fetch` (Node 20, React Native and
 * browsers all have it) and a WebSocket constructor with the W3C shape (React Native's global,
 * or the `ws` package in Node).
 */

export interface HttpResponse<T = unknown> {
  readonly status: number;
  readonly body: T;
}

export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) => Promise<{ status: number; text(): Promise<string> }>;

export interface SocketLike {
  send(data: string | Uint8Array): void;
  /** Set to 'arraybuffer' on a socket of binary frames (a browser's default is Blob). */
  binaryType?: string;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketFactory = (url: string) => SocketLike;

/** A platform's own base64, much faster than the core's portable one (bytes.ts) where it has one. */
export interface Base64Codec {
  encode(bytes: Uint8Array): string;
  decode(base64: string): Uint8Array;
}

export interface Transport {
  readonly relayUrl: string;
  readonly fetch: FetchLike;
  readonly openSocket: SocketFactory;
  /**
   * Given, the core asks the relay for binary frames (docs/protocol.md, "Binary frames"): sends
   * and envelopes then carry their ciphertexts as bytes, and this converts them to and from the
   * base64 the rest of the core uses. The platform's sockets must carry binary messages. Not
   * given, every frame is JSON text, as with a relay that does not take binary frames.
   */
  readonly binaryFrames?: Base64Codec;
}

/** One HTTP exchange: network failures become RELAY_UNREACHABLE, non-JSON answers NOT_A_RELAY. */
/**
 * A socket that could not connect, named like a failed request. The platform may say why in its
 * error event's `message` (Node's transport does; browsers give nothing).
 */
export const socketUnreachable = (transport: Transport, event: unknown): ClientError => {
  const why = (event as { message?: unknown } | undefined)?.message;
  const detail = typeof why === 'string' && why !== '' ? `: ${why}` : '';
  return new ClientError(
    'RELAY_UNREACHABLE',
    `cannot reach the relay at ${transport.relayUrl}${detail}`,
  );
};

export const httpRequest = async <T>(
  transport: Transport,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<HttpResponse<T>> => {
  let response: { status: number; text(): Promise<string> };
  try {
    response = await transport.fetch(`${transport.relayUrl}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new ClientError(
      'RELAY_UNREACHABLE',
      `cannot reach the relay at ${transport.relayUrl}: ${(error as Error).message}`,
    );
  }
  const text = await response.text();
  if (text === '') return { status: response.status, body: undefined as T };
  try {
    return { status: response.status, body: JSON.parse(text) as T };
  } catch {
    throw new ClientError(
      'NOT_A_RELAY',
      `the server at ${transport.relayUrl} did not answer like a privcomm relay (HTTP ${response.status})`,
    );
  }
};

/** The relay's error body, if the response has one. */
export const relayErrorCode = (body: unknown): string | undefined => {
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' ? code : undefined;
};
