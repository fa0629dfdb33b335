import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

/**
 * `stun-probe.ts tls|udp HOST PORT [CA_FILE]`: sends one STUN Binding request (RFC 5389) over TLS
 * (checking the server's certificate against CA_FILE) or UDP, and prints what happened as one
 * JSON line: {"bindingOk":…,"verified":…,"protocol":…}. The NAT tests run it inside a client's
 * namespace, to show what that client's network lets through.
 */

const [mode, host = '', port = '', caFile] = process.argv.slice(2);
const TIMEOUT_MS = 3_000;
const transaction = randomBytes(12);
const request = Buffer.concat([
  Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]),
  transaction,
]);
/** A Binding success response (0x0101) to our transaction. */
const isAnswer = (message: Buffer): boolean =>
  message.length >= 20 &&
  message.readUInt16BE(0) === 0x0101 &&
  message.subarray(8, 20).equals(transaction);

const report = (result: Record<string, unknown>): never => {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
};

if (mode === 'udp') {
  const socket = dgram.createSocket('udp4');
  setTimeout(() => report({ bindingOk: false, error: 'timeout' }), TIMEOUT_MS);
  socket.on('message', (message) => {
    if (isAnswer(message)) report({ bindingOk: true });
  });
  socket.send(request, Number(port), host);
} else if (mode === 'tls') {
  setTimeout(() => report({ bindingOk: false, error: 'timeout' }), TIMEOUT_MS);
  const socket = tls.connect({
    host,
    port: Number(port),
    ...(caFile === undefined ? {} : { ca: readFileSync(caFile) }),
    rejectUnauthorized: true,
  });
  let received = Buffer.alloc(0);
  socket.on('secureConnect', () => socket.write(request));
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    if (isAnswer(received))
      report({ bindingOk: true, verified: socket.authorized, protocol: socket.getProtocol() });
  });
  socket.on('error', (error) => report({ bindingOk: false, error: error.message }));
} else {
  process.stderr.write('usage: stun-probe.ts tls|udp HOST PORT [CA_FILE]\n');
  process.exit(2);
}
