import type { Writable } from 'node:stream';
import type { WebSocket } from 'ws';

/**
 * Fewer system calls: the frames one callback of the event loop produces for a socket go out in
 * one write instead of one each.
 *
 * `ws` writes every frame with its own cork/uncork, so each frame is a `writev` of its own: a
 * quarter of the relay's busy time in the online benchmark (docs/benchmarks.md). Corking the TCP
 * socket under it before the first frame and uncorking once the callback and its promise jobs
 * are done (`process.nextTick`, which runs after the current callback or batch of promise jobs) sends what they produced for that socket together: 3.9 frames per
 * write in the online benchmark. Waiting for the end of the whole turn (`setImmediate`) grouped
 * more but held every answer back behind all of the turn's reads, and measured slower.
 *
 * `ws` keeps its TCP socket in a private field; if a later version renames it, frames are
 * simply written one by one again (the test of this module then fails, to say so).
 */
const corked = new Set<Writable>();
let flushScheduled = false;

const flush = (): void => {
  flushScheduled = false;
  const streams = [...corked];
  corked.clear();
  for (const stream of streams) {
    // A socket ended or destroyed meanwhile has already written (end uncorks) or dropped its data.
    if (stream.destroyed) continue;
    try {
      stream.uncork();
    } catch (error) {
      // One socket's failure must leave the others flushed; `ws` hears of it through 'error'.
      stream.destroy(error as Error);
    }
  }
};

/** The TCP socket `ws` writes to, if it is reachable. */
export const transportOf = (socket: WebSocket): Writable | undefined => {
  const transport = (socket as unknown as { _socket?: unknown })._socket;
  return transport !== null &&
    typeof transport === 'object' &&
    typeof (transport as Writable).cork === 'function' &&
    typeof (transport as Writable).uncork === 'function'
    ? (transport as Writable)
    : undefined;
};

/** Holds the socket's writes until the current callback is done (see above). */
export const coalesceWrites = (socket: WebSocket): void => {
  const transport = transportOf(socket);
  if (transport === undefined || transport.destroyed || corked.has(transport)) return;
  transport.cork();
  corked.add(transport);
  if (!flushScheduled) {
    flushScheduled = true;
    process.nextTick(flush);
  }
};
