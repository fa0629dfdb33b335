import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stunAnswers } from '../src/dev-turn.ts';
import { TestDevice } from './support/client.ts';
import { requireCoturn } from './support/coturn.ts';
import { npmStart, type NpmStart } from './support/npm-start.ts';
import { spawnRelay, type RelayProcess } from './support/relay.ts';

/**
 * The development coturn of the quick start: `npm start` on this machine alone starts a real
 * coturn on loopback, hands out credentials it accepts, and stops it on exit; an explicit
 * TURN_URLS wins; without coturn installed the log says how to install it.
 */

const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const tempDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-dev-turn-'));
  cleanup.push(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-secrets`, { recursive: true, force: true });
  });
  return dir;
};

/** `npm start` on a fresh DATA_DIR, stopped (SIGTERM to npm) at the end of the test. */
const start = async (env: Record<string, string> = {}): Promise<NpmStart> => {
  const started = await npmStart({ DATA_DIR: tempDir(), ...env });
  cleanup.push(async () => {
    if (started.npm.exitCode === null) started.npm.kill('SIGTERM');
    await started.exit;
  });
  return started;
};

/** The JSON log lines with this message. */
const logged = (output: string[], message: string): Record<string, unknown>[] =>
  output
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === message);

const alive = (pid: number): boolean => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

/** turnutils_uclient allocates and relays through coturn with these credentials: exit 0. */
const allocates = (port: number, username: string, password: string): number | null =>
  spawnSync(
    'turnutils_uclient',
    ['-p', String(port), '-u', username, '-w', password, '-y', '-n', '10', '127.0.0.1'],
    { stdio: 'ignore', timeout: 30_000 },
  ).status;

describe.runIf(process.platform === 'linux')('the development coturn', () => {
  it('starts with `npm start`, hands out working credentials, and stops with the relay', async () => {
    requireCoturn();
    const started = await start();
    const [line] = logged(
      started.output,
      'development TURN server (coturn) started on 127.0.0.1 for local calls',
    );
    expect(line).toBeDefined();
    const port = line!.port as number;
    const configFile = line!.config as string;
    expect(logged(started.output, 'relay listening')[0]?.turn).toBe('development');

    // Its configuration, in DATA_DIR, readable by the relay's user alone: loopback only.
    expect(configFile).toMatch(/privcomm-dev-turn-[^/]+\/coturn\/turnserver\.conf$/);
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    const config = readFileSync(configFile, 'utf8');
    expect(config).toContain('listening-ip=127.0.0.1\n');
    expect(config).toContain('relay-ip=127.0.0.1\n');
    expect(config).toContain(`listening-port=${port}\n`);
    expect(await stunAnswers(port, 2_000)).toBe(true);
    const pid = Number(readFileSync(path.join(path.dirname(configFile), 'turnserver.pid'), 'utf8'));
    expect(alive(pid)).toBe(true);

    // A device gets credentials for it, and coturn accepts them.
    const device = await TestDevice.register(started.url);
    const turn = await device.request('GET', '/v1/turn');
    expect(turn.status).toBe(200);
    expect(turn.body.urls).toEqual([
      `turn:127.0.0.1:${port}?transport=udp`,
      `turn:127.0.0.1:${port}?transport=tcp`,
    ]);
    expect(allocates(port, turn.body.username, turn.body.password)).toBe(0);
    expect(allocates(port, turn.body.username, 'wrong-password')).not.toBe(0);

    // Stopping the relay stops coturn and removes its configuration (it holds the secret).
    started.npm.kill('SIGTERM');
    expect(await started.exit).toEqual({ code: 0, signal: null });
    expect(alive(pid)).toBe(false);
    expect(existsSync(configFile)).toBe(false);
    expect(logged(started.output, 'development TURN server stopped')).toHaveLength(1);
  });

  it('is not started when TURN_URLS names a TURN server', async () => {
    const started = await start({
      TURN_URLS: 'turn:turn.example.org:3478?transport=udp',
      TURN_SECRET: 'a3f9c2e1b7d64058a9e2c4f1b3d5e7f9',
    });
    expect(logged(started.output, 'relay listening')[0]?.turn).toBe('configured');
    expect(started.output.join('')).not.toContain('development TURN server');
    const device = await TestDevice.register(started.url);
    expect((await device.request('GET', '/v1/turn')).body.urls).toEqual([
      'turn:turn.example.org:3478?transport=udp',
    ]);
  });

  it('says how to install coturn when turnserver is missing', async () => {
    // A PATH with what the embedded PostgreSQL needs (`id`, as root) and no turnserver.
    const bin = tempDir();
    symlinkSync('/usr/bin/id', path.join(bin, 'id'));
    let relay: RelayProcess | undefined;
    try {
      relay = await spawnRelay('', {
        DATABASE_URL: '',
        DATA_DIR: tempDir(),
        PATH: bin,
        DEV_TURN: 'auto',
      });
      const warning = relay.logs.find((log) => log.includes('no TURN server for calls'));
      expect(warning).toContain(
        "coturn's turnserver is not installed; install coturn (Debian/Ubuntu: apt-get install coturn;",
      );
      expect(relay.logs.join('\n')).toContain('"turn":"none"');
    } finally {
      expect(await relay?.stop()).toBe(0);
    }
  });
});
