import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  loopbackCoturnConfig,
  portFree,
  randomCoturnPorts,
  stopProcess,
  stunAnswers,
  type CoturnPorts,
} from '../../src/dev-turn.ts';

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
export type CoturnConfigFor = (ports: CoturnPorts, dir: string) => string;

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

/** A throwaway coturn: loopback only, loopback peers allowed (tests only; production denies them). */
export const throwawayCoturnConfig =
  (secret: string): CoturnConfigFor =>
  (ports, dir) =>
    loopbackCoturnConfig(ports, secret, dir);

const PRODUCTION_CONFIG = new URL('../../../../config/turnserver.conf', import.meta.url);

/** The lines of config/turnserver.conf that describe the machine it runs on. */
const MACHINE_KEYS = new Set([
  'listening-port',
  'tls-listening-port',
  'cert',
  'pkey',
  'external-ip',
  'min-port',
  'max-port',
  'static-auth-secret',
]);

/**
 * config/turnserver.conf as shipped, moved onto the test's machine: its listeners, relay ports,
 * certificate, public address and secret are replaced by `machine`'s lines and `secret`;
 * everything else (peer rules, quotas, bandwidth, surface) stays. `edit` may change the
 * remaining lines.
 */
export const productionCoturnConfig =
  (
    secret: string,
    machine: (ports: CoturnPorts) => string[],
    edit: (lines: string[]) => string[] = (lines) => lines,
  ): CoturnConfigFor =>
  (ports, dir) => {
    const kept = readFileSync(PRODUCTION_CONFIG, 'utf8')
      .split('\n')
      .filter((line) => !MACHINE_KEYS.has(line.split('=')[0]?.trim() ?? ''));
    return [
      ...edit(kept),
      ...machine(ports),
      `static-auth-secret=${secret}`,
      `pidfile=${path.join(dir, 'turnserver.pid')}`,
      `userdb=${path.join(dir, 'turndb')}`,
    ].join('\n');
  };

/**
 * Starts turnserver with `config` (by default the throwaway one, with a random secret), retrying
 * on another port if it does not answer STUN within 10 s. `port` fixes the listening port (the
 * NAT tests, in a network namespace of their own, use the standard 3478); the configuration must
 * then also listen on 127.0.0.1, where readiness is checked.
 */
export const startCoturn = async (
  secret: string = randomBytes(32).toString('hex'),
  config: CoturnConfigFor = throwawayCoturnConfig(secret),
  options: { readonly port?: number } = {},
): Promise<Coturn> => {
  requireCoturn();
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const ports =
      options.port === undefined
        ? randomCoturnPorts()
        : { port: options.port, minPort: options.port + 10, maxPort: options.port + 109 };
    const port = ports.port;
    if (!(await portFree(port))) continue;
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
