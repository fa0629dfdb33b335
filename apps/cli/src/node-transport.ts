import type { FetchLike, SocketFactory, SocketLike, Transport } from '@privcomm/client';
// The subpath, not the package: the package loads libsignal, which most commands never need.
import { nodeBase64 } from '@privcomm/engine-node/node-base64';
import { CLOSE_CODES } from '@privcomm/wire';
import WebSocket from 'ws';
import { TLS_FAILED } from './errors.ts';

/** An HTTP exchange or a socket handshake that takes longer than this fails. */
const TIMEOUT_MS = 15_000;

/** Node's codes for a certificate it does not trust. */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/** Turns Node's network errors ("fetch failed") into what happened, for one clear line. */
export const describeNetworkError = (error: unknown): string => {
  const err = error as {
    name?: string;
    message?: string;
    cause?: { code?: string; message?: string };
  };
  if (err.name === 'TimeoutError' || err.name === 'AbortError')
    return `no answer within ${TIMEOUT_MS / 1000} s`;
  const code = err.cause?.code ?? '';
  // OpenSSL's own text spans lines and names its internals: one stable code instead.
  if (code.startsWith('ERR_SSL_') || /SSL routines/.test(err.cause?.message ?? ''))
    return `no TLS answer (${TLS_FAILED})`;
  if (CERTIFICATE_CODES.has(code) || code.startsWith('ERR_TLS_CERT'))
    return `the relay's TLS certificate is not trusted (${code})`;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'connection reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connection timed out';
    default:
      return (err.cause?.message ?? err.message ?? 'network error').split('\n')[0]!.trim();
  }
};

/**
 * What the transport learned about the relay during one run. One object per run (not module
 * state), written by the transport, read by describeError and the client's retry waits.
 */
export interface RelayWatch {
  /**
   * The relay refused this device's login (challenge or token, or on the socket: closed with
   * 4401): then a "no such device/account" answer is about this profile, not about the command's
   * argument.
   */
  loginRefused: boolean;
  /** The last attempt found nobody listening at the relay's address (connection refused). */
  connectionRefused: boolean;
  /**
   * Set by the commands that stay connected (listen, daemon): their retries keep waiting,
   * since the core's reconnection backs off through the same waits.
   */
  stayingConnected?: boolean;
}

const nodeFetch =
  (relay: RelayWatch): FetchLike =>
  async (url, init) => {
    let response: Response;
    try {
      response = await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (error) {
      relay.connectionRefused =
        (error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
      throw new Error(describeNetworkError(error), { cause: error });
    }
    relay.connectionRefused = false;
    if (/\/v1\/auth\/(challenge|token)$/.test(new URL(url).pathname) && response.status >= 400)
      relay.loginRefused = response.status !== 429;
    return {
      status: response.status,
      text: async () => {
        try {
          return await response.text();
        } catch (error) {
          // Read as "not a relay" by the core: a cut-off body is not an answer either.
          return `<${describeNetworkError(error)}>`;
        }
      },
    };
  };

/**
 * A `ws` socket in the client core's shape. One that cannot connect says why in the words a failed
 * request uses ("connection refused"), and tells the run's RelayWatch: the socket is often the
 * first thing a command asks of the relay (it logs in there).
 */
const nodeSocket =
  (relay: RelayWatch): SocketFactory =>
  (url) => {
    const ws = new WebSocket(url, { handshakeTimeout: TIMEOUT_MS });
    const socket: SocketLike = {
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      set binaryType(type: string) {
        ws.binaryType = type as WebSocket['binaryType'];
      },
      get binaryType() {
        return ws.binaryType;
      },
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
    };
    ws.onopen = (event) => {
      relay.connectionRefused = false;
      socket.onopen?.(event);
    };
    ws.onmessage = (event) => socket.onmessage?.({ data: event.data });
    ws.onclose = (event) => {
      // The relay no longer accepts this device, as when it refuses an HTTP login.
      if (event.code === CLOSE_CODES.UNAUTHENTICATED) relay.loginRefused = true;
      socket.onclose?.({ code: event.code, reason: event.reason });
    };
    ws.onerror = (event) => {
      const cause = event.error as { code?: string; message?: string } | undefined;
      relay.connectionRefused = cause?.code === 'ECONNREFUSED';
      socket.onerror?.({ message: describeNetworkError({ cause, message: event.message }) });
    };
    return socket;
  };

/**
 * The relay as seen from Node: global fetch, and the `ws` package for sockets, which speak binary
 * frames where the relay takes them.
 */
export const nodeTransport = (
  relayUrl: string,
  relay: RelayWatch = { loginRefused: false, connectionRefused: false },
): Transport => ({
  relayUrl,
  fetch: nodeFetch(relay),
  openSocket: nodeSocket(relay),
  binaryFrames: nodeBase64,
});
