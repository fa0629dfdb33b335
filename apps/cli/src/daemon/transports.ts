import { chmodSync, lstatSync, rmSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { CliError } from '../errors.ts';
import { MAX_REQUEST_BYTES, type Dispatcher } from './json-rpc.ts';

/**
 * How JSON-RPC reaches the daemon: one JSON text per line, both ways. Each transport turns a
 * byte stream into lines for the dispatcher and gives the daemon a Peer to push notifications
 * to. The dispatcher knows nothing of them, so another transport (a loopback bridge for a web
 * client) is one more function here.
 */

/** Someone the daemon answers and notifies. */
export interface Peer {
  send(line: string): void;
}

/**
 * Feeds the lines of `input` to the dispatcher, in order, answering on `peer`. A line longer
 * than the limit is answered with an error and skipped, without being kept in memory.
 * Resolves when the input ends and every answer is written.
 */
export const serveLines = (
  input: NodeJS.ReadableStream,
  peer: Peer,
  dispatcher: Dispatcher,
): Promise<void> =>
  new Promise((resolve) => {
    let buffered = '';
    let skipping = false;
    let queue: Promise<void> = Promise.resolve();
    const answer = (line: string) => {
      queue = queue.then(async () => {
        const reply = await dispatcher.handle(line);
        if (reply !== undefined) peer.send(reply);
      });
    };
    input.on('data', (chunk: Buffer | string) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).replace(/\r$/, '');
        buffered = buffered.slice(newline + 1);
        if (skipping) skipping = false;
        else if (line.trim() !== '') answer(line);
      }
      if (!skipping && buffered.length > MAX_REQUEST_BYTES) {
        // Answered as too large (the dispatcher says so), then dropped up to the next newline.
        answer(buffered);
        buffered = '';
        skipping = true;
      } else if (skipping) buffered = '';
    });
    input.on('end', () => {
      if (!skipping && buffered.trim() !== '') answer(buffered);
      void queue.then(() => resolve());
    });
    input.on('error', () => void queue.then(() => resolve()));
  });

/** A Unix socket at `path`, only for this user (0600); every client gets the notifications. */
export const serveSocket = async (
  path: string,
  dispatcher: Dispatcher,
  peers: Set<Peer>,
): Promise<{ close(): Promise<void> }> => {
  await removeStaleSocket(path);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const peer: Peer = {
      send: (line) => {
        if (!socket.destroyed) socket.write(`${line}\n`);
      },
    };
    peers.add(peer);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      peers.delete(peer);
      sockets.delete(socket);
    });
    void serveLines(socket, peer, dispatcher).then(() => socket.end());
  });
  // Created with no access for others from the start (the umask), then made 0600 for sure.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new CliError(
            `cannot listen on ${path} (${error.code ?? error.message}); give another --socket PATH`,
            'SOCKET_UNAVAILABLE',
          ),
        ),
      );
      server.listen(path, resolve);
    });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          rmSync(path, { force: true });
          resolve();
        });
      }),
  };
};

/**
 * A socket file left by a daemon that died is removed; anything else at the path (a file, or a
 * socket that a running daemon answers on) is refused.
 */
const removeStaleSocket = async (path: string): Promise<void> => {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  const inUse = () =>
    new CliError(
      `${path} is in use (${isSocket ? 'another daemon answers there' : 'not a socket'}); give another --socket PATH`,
      'SOCKET_UNAVAILABLE',
    );
  if (!isSocket) throw inUse();
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
  if (answered) throw inUse();
  unlinkSync(path);
};
