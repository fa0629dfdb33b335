import type { FetchLike, SocketLike, Transport } from '@privcomm/client';

/** What the transport needs from its platform: React Native's globals, or Node's in tests. */
export interface NetworkGlobals {
  readonly fetch: typeof globalThis.fetch;
  readonly WebSocket: new (url: string) => unknown;
}

/** An HTTP exchange or a socket handshake that takes longer than this fails. */
const TIMEOUT_MS = 15_000;

/**
 * The relay through the platform's fetch and WebSocket (React Native provides both). Network
 * failures throw, which the core turns into RELAY_UNREACHABLE; screens map that code to words.
 */
export const createTransport = (
  relayUrl: string,
  globals: NetworkGlobals = { fetch: globalThis.fetch, WebSocket: globalThis.WebSocket },
): Transport => {
  const fetchLike: FetchLike = async (url, init) => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await globals.fetch(url, { ...init, signal: controller.signal });
      return { status: response.status, text: () => response.text() };
    } catch (error) {
      throw new Error(
        controller.signal.aborted ? `no answer within ${TIMEOUT_MS / 1000} s` : String(error),
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    relayUrl: relayUrl.replace(/\/+$/, ''),
    fetch: fetchLike,
    openSocket: (url) => new globals.WebSocket(url) as SocketLike,
  };
};
