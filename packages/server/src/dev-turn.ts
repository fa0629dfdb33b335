import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { accessSync, constants, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RelayConfig, TurnConfig } from './config.ts';

/**
 * The development TURN server of the quick start: when `npm start` runs a relay for this machine
 * alone (config.devTurn) and coturn's `turnserver` is installed, the relay starts one on
 * 127.0.0.1, with a secret generated for this run and its configuration in DATA_DIR/coturn, hands
 * out credentials for it, and stops it on exit. Calls between local clients then work with no
 * hand-written configuration. Production never gets here: config.ts allows it only for a loopback
 * HOST with no proxy and the embedded database, and an explicit TURN_URLS always wins.
 *
 * Its configuration allows loopback peers, which config/turnserver.conf rightly refuses: two
 * clients on this machine meet through it on 127.0.0.1. That opens nothing to anyone else, since
 * it listens and relays on loopback only.
 */

/** coturn ports stay below Linux's ephemeral range (32768+): there it can collide and never answer. */
export const COTURN_PORTS = { from: 20_000, to: 31_000, relayOffset: 10, relayCount: 100 } as const;

export interface CoturnPorts {
  readonly port: number;
  readonly minPort: number;
  readonly maxPort: number;
}

/** A random listening port and its relay range, below the ephemeral range. */
export const randomCoturnPorts = (): CoturnPorts => {
  const port = randomInt(COTURN_PORTS.from, COTURN_PORTS.to);
  const minPort = port + COTURN_PORTS.relayOffset;
  return { port, minPort, maxPort: minPort + COTURN_PORTS.relayCount - 1 };
};

/**
 * A coturn configuration for loopback use (development and tests): listens and relays on
 * 127.0.0.1 only, TURN REST API credentials with `secret`, no TLS, no CLI, loopback peers allowed,
 * and its files in `dir` rather than /var.
 */
export const loopbackCoturnConfig = (ports: CoturnPorts, secret: string, dir: string): string =>
  [
    'listening-ip=127.0.0.1',
    'relay-ip=127.0.0.1',
    `listening-port=${ports.port}`,
    `min-port=${ports.minPort}`,
    `max-port=${ports.maxPort}`,
    'realm=privcomm.localhost',
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
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
    `userdb=${path.join(dir, 'turndb')}`,
  ].join('\n');

/** Both a UDP and a TCP socket can bind the port on 127.0.0.1 right now. */
export const portFree = async (port: number): Promise<boolean> => {
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

/** Whether a STUN Binding request (RFC 5389) to host:port over UDP is answered within `timeoutMs`. */
export const stunAnswers = (
  port: number,
  timeoutMs: number,
  host = '127.0.0.1',
): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const transaction = randomBytes(12);
    // Type 0x0001 (Binding), length 0, the magic cookie, the transaction id.
    const request = Buffer.concat([
      Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]),
      transaction,
    ]);
    const done = (answered: boolean): void => {
      clearTimeout(timer);
      socket.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('error', () => done(false));
    socket.on('message', (message) => {
      // A Binding success response (0x0101) to our transaction.
      if (message.readUInt16BE(0) === 0x0101 && message.subarray(8, 20).equals(transaction)) {
        done(true);
      }
    });
    socket.send(request, port, host, (error) => {
      if (error) done(false);
    });
  });

/** The full path of `command` in PATH, if it is there and executable. */
export const findExecutable = (command: string, searchPath: string): string | undefined => {
  for (const dir of searchPath.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
};

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export const stopProcess = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
};

export const INSTALL_COTURN =
  'install coturn (Debian/Ubuntu: apt-get install coturn; Fedora: dnf install coturn; macOS: brew install coturn) and start again, or set TURN_URLS and TURN_SECRET for a TURN server of your own';

export interface DevTurn {
  /** What the relay hands out: TURN over UDP and TCP on 127.0.0.1. */
  readonly turn: TurnConfig;
  readonly configFile: string;
  /** coturn's process id. */
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * A coturn left running by a relay that was killed (SIGKILL gives no chance to stop it): stopped
 * if its pid file names a process whose command line is this very configuration file.
 */
const stopLeftover = (dir: string, configFile: string, log: Logger): void => {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dir, 'turnserver.pid'), 'utf8').trim());
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(configFile)) return;
  } catch {
    return;
  }
  log.warn({ pid }, 'stopping the development TURN server a killed relay left running');
  process.kill(pid, 'SIGTERM');
};

const READY_TIMEOUT_MS = 10_000;

/**
 * Starts the development coturn if the configuration allows it and `turnserver` is installed;
 * otherwise logs why there is none (and how to get one) and returns undefined.
 */
export const startDevTurn = async (
  config: RelayConfig,
  log: Logger,
  searchPath: string = process.env.PATH ?? '',
): Promise<DevTurn | undefined> => {
  if (config.devTurn === undefined) return undefined;
  const binary = findExecutable('turnserver', searchPath);
  if (binary === undefined) {
    log.warn(`no TURN server for calls: coturn's turnserver is not installed; ${INSTALL_COTURN}`);
    return undefined;
  }
  const dir = path.join(config.dataDir, 'coturn');
  const configFile = path.join(dir, 'turnserver.conf');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  stopLeftover(dir, configFile, log);
  // A fresh secret for each run, never stored beside the data for longer than coturn runs.
  const secret = randomBytes(32).toString('hex');
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const ports = randomCoturnPorts();
    if (!(await portFree(ports.port))) continue;
    writeFileSync(configFile, `${loopbackCoturnConfig(ports, secret, dir)}\n`, { mode: 0o600 });
    const output: string[] = [];
    // Its own process group, like the embedded PostgreSQL: the relay stops it after itself.
    const child = spawn(binary, ['-c', configFile], {
      cwd: dir,
      env: { PATH: searchPath },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const collect = (chunk: Buffer): void => {
      output.push(chunk.toString('utf8'));
      if (output.length > 50) output.shift();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', (error) => output.push(error.message));
    const stopOnExit = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    };
    process.once('exit', stopOnExit);
    const stop = async (): Promise<void> => {
      process.removeListener('exit', stopOnExit);
      await stopProcess(child);
      rmSync(dir, { recursive: true, force: true });
    };
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await stunAnswers(ports.port, 250)) {
        let stopping = false;
        child.once('exit', (code, signal) => {
          if (!stopping) log.warn({ code, signal }, 'the development TURN server stopped');
        });
        log.info(
          { port: ports.port, config: configFile },
          'development TURN server (coturn) started on 127.0.0.1 for local calls',
        );
        return {
          turn: {
            urls: [
              `turn:127.0.0.1:${ports.port}?transport=udp`,
              `turn:127.0.0.1:${ports.port}?transport=tcp`,
            ],
            secret,
            ttlSeconds: config.devTurn.ttlSeconds,
          },
          configFile,
          pid: child.pid as number,
          stop: async () => {
            stopping = true;
            await stop();
            log.info('development TURN server stopped');
          },
        };
      }
    }
    failures.push(`port ${ports.port}: ${output.join('').trim().slice(-500)}`);
    await stop();
  }
  // Calls still work peer to peer on this machine; say why TURN is missing and go on.
  log.warn(
    { attempts: failures },
    'no TURN server for calls: the development coturn did not answer; set DEV_TURN=off to stop trying, or TURN_URLS for a TURN server of your own',
  );
  return undefined;
};
