import type { Writable } from 'node:stream';
import type { WebSocket } from 'ws';

/**
 * Fewer system calls: the frames one turn of the event loop produces for a socket go out in one
 * write instead of one each.
 *
 * `ws` writes every frame with its own cork/uncork, so each frame is a `writev` of its own: a
 * quarter of the relay's busy time in the online benchmark (docs/benchmarks.md). Corking the TCP
 * socket under it before the first frame and uncorking at the end of the turn (`setImmediate`,
 * once the turn's reads and their promise jobs are done) sends what they produced for that
 * socket together. Uncorking after each callback (`process.nextTick`) measured faster while the
 * benchmark's load generator wrote every frame on its own, and 14 % slower online once it wrote a
 * turn's frames for a socket together, as clients may (item 32).
 *
 * What is held is lost if the socket is destroyed before the turn ends: `close()` and `end()`
 * write it first, `terminate()` drops it. So a socket whose last frames must arrive is closed,
 * not terminated. The websocket error handler in app.ts once terminated the socket after a
 * client's broken frame, and threw away the close frame ws had just written (item 37); it now
 * terminates only after a failure of the relay's own.
 *
 * `ws` keeps its TCP socket in a private field; if a later version renames it, frames are
 * simply written one by one again (the test of this module then fails, to say so).
 */
let corked: Writable[] = [];
/** The other of the two lists, empty: the lists take turns, so that a flush allocates nothing. */
let spare: Writable[] = [];
let flushScheduled = false;

/*
 * Two arrays rather than a Set, which the relay had until 2026-12-06: a long-lived Set or Map that
 * is cleared or shrinks gets its new table allocated straight in the old generation (V8 keeps a
 * table where its owner lives), so each flush left garbage there: at 4,000 messages/s a third of
 * all the relay promoted, and the full collections that cleared it were the fixed rate's p99
 * (docs/benchmarks.md, item 28).
 */
const flush = (): void => {
  flushScheduled = false;
  const streams = corked;
  corked = spare;
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
  streams.length = 0;
  spare = streams;
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

/** Holds a stream's writes until the event loop's turn is done (see above). */
export const coalesceStreamWrites = (stream: Writable): void => {
  // Corked already means corked here: `ws` corks only inside a frame's own write, and uncorks
  // before it returns.
  if (stream.destroyed || stream.writableCorked > 0) return;
  stream.cork();
  corked.push(stream);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
};

/** Holds the socket's writes until the event loop's turn is done (see above). */
export const coalesceWrites = (socket: WebSocket): void => {
  const transport = transportOf(socket);
  if (transport !== undefined) coalesceStreamWrites(transport);
};
