import WebSocket from 'ws';
import type { SocketLike } from '@privcomm/client';

/** What a test sees of a socket's traffic, and may change. */
export interface SocketWatch {
  /** Each frame the client sends, before it goes. */
  sending?(data: string | Uint8Array): void;
  /** Each frame the relay sends: returns the frames the client gets instead, in order. */
  received?(data: unknown): unknown[];
  /** The socket closed. */
  closed?(): void;
}

/** A `ws` socket in the client core's shape, whose traffic `watch` sees (records, tampers with). */
export const watchedSocket = (url: string, watch: SocketWatch): SocketLike => {
  const ws = new WebSocket(url);
  const socket: SocketLike = {
    send: (data) => {
      watch.sending?.(data);
      ws.send(data);
    },
    close: (code, reason) => ws.close(code, reason),
    // The core asks for ArrayBuffers on a socket of binary frames; ws gives Buffers by default.
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
  ws.onopen = (event) => socket.onopen?.(event);
  ws.onerror = (event) => socket.onerror?.(event);
  ws.onclose = (event) => {
    watch.closed?.();
    socket.onclose?.({ code: event.code, reason: event.reason });
  };
  ws.onmessage = (event) => {
    for (const data of watch.received?.(event.data) ?? [event.data]) socket.onmessage?.({ data });
  };
  return socket;
};
