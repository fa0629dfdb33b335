import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A throwaway coturn for tests (config/turnserver.conf explains the options): a real turnserver on loopback, with
 * its files in a temporary directory, on ports below 32768 (in the Linux ephemeral range coturn
 * can collide and then never answer), ready once it answers a STUN Binding request.
 */

export interface Coturn {
  readonly port: number;
  readonly secret: string;
  /** Everything coturn wrote, stdout and stderr. */
  readonly output: () => string;
  stop(): Promise<void>;
}

/** A configuration for the given listening and relay ports; `dir` is for coturn's own files. */
export type CoturnConfigFor = (
  ports: { port: number; minPort: number; maxPort: number },
  dir: string,
) => string;

const installed = (command: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/** Fails with an explanation when coturn's binaries are missing: these tests need a real one. */
export const requireCoturn = (): void => {
  const missing = ['turnserver', 'turnutils_uclient'].filter((command) => !installed(command));
  if (missing.length > 0) {
    throw new Error(
      `coturn is not installed (${missing.join(', ')} not found): these tests need a real TURN server. ` +
        'Install it with `apt-get install coturn` (.ci/run does).',
    );
  }
};

/** Both a UDP and a TCP socket can bind the port on 127.0.0.1 right now. */
const portFree = async (port: number): Promise<boolean> => {
  const udp = await new Promise<boolean>((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
  if (!udp) return false;
  return new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
};

/** A STUN Binding request (RFC 5389): type 0x0001, length 0, magic cookie, transaction id. */
const stunAnswers = (port: number, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const transaction = randomBytes(12);
    const request = Buffer.concat([
      Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]),
      transaction,
    ]);
    const done = (answered: boolean) => {
      clearTimeout(timer);
      socket.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('error', () => done(false));
    socket.on('message', (message) => {
      // Binding success response (0x0101) to our transaction.
      if (message.readUInt16BE(0) === 0x0101 && message.subarray(8, 20).equals(transaction)) {
        done(true);
      }
    });
    socket.send(request, port, '127.0.0.1');
  });

/** A throwaway coturn: loopback only, loopback peers allowed (tests only; production denies them). */
export const throwawayCoturnConfig =
  (secret: string): CoturnConfigFor =>
  ({ port, minPort, maxPort }, dir) =>
    [
      'listening-ip=127.0.0.1',
      'relay-ip=127.0.0.1',
      `listening-port=${port}`,
      `min-port=${minPort}`,
      `max-port=${maxPort}`,
      'realm=relay.test',
      'use-auth-secret',
      `static-auth-secret=${secret}`,
      'fingerprint',
      'no-tls',
      'no-dtls',
      'no-cli',
      'no-multicast-peers',
      'allow-loopback-peers',
      'no-software-attribute',
      'log-file=stdout',
      'simple-log',
      // Keep coturn's files out of /var.
      `pidfile=${path.join(dir, 'turnserver.pid')}`,
      `userdb=${path.join(dir, 'turndb')}`,
    ].join('\n');

const stopProcess = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
};

/**
 * Starts turnserver with `config` (by default the throwaway one, with a random secret), retrying
 * on another port if it does not answer STUN within 10 s.
 */
export const startCoturn = async (
  secret: string = randomBytes(32).toString('hex'),
  config: CoturnConfigFor = throwawayCoturnConfig(secret),
): Promise<Coturn> => {
  requireCoturn();
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = randomInt(20_000, 31_000);
    if (!(await portFree(port))) continue;
    const ports = { port, minPort: port + 10, maxPort: port + 109 };
    const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-coturn-'));
    const file = path.join(dir, 'turnserver.conf');
    writeFileSync(file, `${config(ports, dir)}\n`, { mode: 0o600 });
    const chunks: string[] = [];
    const child = spawn('turnserver', ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
    const coturn: Coturn = {
      port,
      secret,
      output: () => chunks.join(''),
      stop: async () => {
        await stopProcess(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await stunAnswers(port, 250)) return coturn;
    }
    failures.push(`port ${port}: exit ${child.exitCode}\n${coturn.output().slice(-2000)}`);
    await coturn.stop();
  }
  throw new Error(`turnserver did not answer a STUN Binding request:\n${failures.join('\n')}`);
};
