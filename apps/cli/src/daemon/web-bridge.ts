import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CliError, UsageError } from '../errors.ts';
import { MAX_REQUEST_BYTES, type Dispatcher } from './json-rpc.ts';

/**
 * The web bridge: JSON-RPC over a WebSocket on loopback, for the app's web build (a development
 * tool: the browser runs the app, this process keeps the engine, the store and the login key).
 * Who may connect is decided before the WebSocket exists, at the HTTP upgrade:
 * - the listening address is a loopback address, never anything else (parseBridgeAddress);
 * - the `Host` is a loopback name, so that a page whose domain was re-pointed at 127.0.0.1 (DNS
 *   rebinding) is refused;
 * - the `Origin`, which browsers always send, is a page on this machine (http(s) on loopback);
 * - the per-run secret, printed once at start, comes as a WebSocket subprotocol
 *   (`secret.<hex>`: a browser cannot set other headers), compared in constant time.
 * Any failure is answered with an HTTP status and no WebSocket. One page at a time: a new one
 * (a reload) replaces the previous connection, whose client core would otherwise share the
 * profile's engine and store with it.
 */

/** The subprotocol the bridge speaks; the browser offers it with its secret. */
export const BRIDGE_PROTOCOL = 'privcomm-bridge.v1';
const SECRET_PREFIX = 'secret.';

const isLoopbackIp = (host: string): boolean =>
  (net.isIPv4(host) && host.startsWith('127.')) || host === '::1';

/** A Host or Origin host name on this machine: a loopback address, or localhost. */
const isLoopbackName = (host: string): boolean => {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return bare === 'localhost' || isLoopbackIp(bare);
};

/**
 * `HOST:PORT` (or `[::1]:PORT`, or a bare port) for the bridge. Anything but a loopback address
 * is refused: the bridge hands out a device's store and signatures to whoever has the secret,
 * which must never travel over a network.
 */
export const parseBridgeAddress = (value: string): { host: string; port: number } => {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  const host = match?.[1] || match?.[2] || '127.0.0.1';
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535)
    throw new UsageError(
      `--web-bridge takes HOST:PORT on loopback (e.g. 127.0.0.1:0), not "${value}"`,
    );
  if (!isLoopbackIp(host))
    throw new UsageError(
      `the web bridge listens on loopback only (127.0.0.1 or [::1]), not on ${host}: it is a development tool for a browser on this machine`,
    );
  return { host, port };
};

/** Why an upgrade was refused: the HTTP status and a line for the page's console. */
type Refusal = readonly [status: number, reason: string];

const sameSecret = (offered: string, secret: string): boolean => {
  const a = Buffer.from(offered);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
};

/** Undefined if the upgrade may go on; else why not. */
export const checkUpgrade = (request: IncomingMessage, secret: string): Refusal | undefined => {
  const host = request.headers.host ?? '';
  if (!isLoopbackName(host.replace(/:\d+$/, ''))) return [421, 'Host is not a loopback name'];
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (
      !parsed ||
      !['http:', 'https:'].includes(parsed.protocol) ||
      !isLoopbackName(parsed.hostname)
    )
      return [403, 'Origin is not a page on this machine'];
  }
  const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  if (!offered.includes(BRIDGE_PROTOCOL)) return [426, `offer the ${BRIDGE_PROTOCOL} subprotocol`];
  const given = offered.find((p) => p.startsWith(SECRET_PREFIX));
  if (given === undefined || !sameSecret(given.slice(SECRET_PREFIX.length), secret))
    return [401, 'wrong or missing secret'];
  return undefined;
};

const refuse = (socket: Duplex, [status, reason]: Refusal): void => {
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
      `Content-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`,
  );
};

export interface WebBridge {
  /** ws://HOST:PORT/ as bound (the port the system chose). */
  readonly url: string;
  /** The per-run secret (64 hex digits). */
  readonly secret: string;
  close(): Promise<void>;
}

/** Serves `dispatcher` on `address` (checked by parseBridgeAddress) until closed. */
export const serveWebBridge = async (
  address: string,
  dispatcher: Dispatcher,
): Promise<WebBridge> => {
  const { host, port } = parseBridgeAddress(address);
  const secret = randomBytes(32).toString('hex');
  const server = createServer((_request, response) => {
    // Not a web server: the app is served by Expo's dev server or a static server.
    response.writeHead(426, { 'content-type': 'text/plain' }).end('a WebSocket bridge\n');
  });
  const sockets = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_REQUEST_BYTES,
    handleProtocols: () => BRIDGE_PROTOCOL,
  });
  let current: WebSocket | undefined;
  server.on('upgrade', (request, socket, head) => {
    const refusal = checkUpgrade(request, secret);
    if (refusal) {
      refuse(socket, refusal);
      return;
    }
    sockets.handleUpgrade(request, socket, head, (ws) => {
      current?.close(4000, 'another page connected to this bridge');
      current = ws;
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          ws.close(1003, 'text frames only');
          return;
        }
        // Each request is answered when it is done; answers carry their request's id.
        void dispatcher.handle(data.toString()).then((answer) => {
          if (answer !== undefined && ws.readyState === ws.OPEN) ws.send(answer);
        });
      });
      ws.on('error', () => undefined);
      ws.on('close', () => {
        if (current === ws) current = undefined;
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new CliError(
          `cannot listen on ${address} (${error.code ?? error.message}); give another --web-bridge HOST:PORT`,
          'SOCKET_UNAVAILABLE',
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `ws://${shownHost}:${bound.port}/`,
    secret,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of sockets.clients) client.terminate();
        sockets.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
};
