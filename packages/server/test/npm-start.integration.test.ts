import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * `npm start` stopped the way a process manager or a terminal stops it. npm runs the script
 * through `sh -c`, and a shell does not pass signals on: the relay must be the shell's own
 * process (exec), so that the SIGTERM npm forwards reaches it.
 */
const REPOSITORY = fileURLToPath(new URL('../../..', import.meta.url));

interface Started {
  readonly npm: ChildProcess;
  readonly port: number;
  readonly output: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const npmStart = async (dataDir: string): Promise<Started> => {
  const npm = spawn('npm', ['start'], {
    cwd: REPOSITORY,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/',
      DATA_DIR: dataDir,
      PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a terminal gives a foreground job.
    detached: true,
  });
  const output: string[] = [];
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    npm.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output.push(chunk.toString('utf8'));
      const match = /"port":(\d+)[^\n]*"msg":"relay listening"/.exec(output.join(''));
      if (match) resolve(Number(match[1]));
    };
    npm.stdout?.on('data', onData);
    npm.stderr?.on('data', onData);
    void exit.then(() => reject(new Error(`npm start ended:\n${output.join('')}`)));
  });
  return { npm, port, output, exit };
};

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** Processes whose command line mentions `text`, from /proc. */
const processesMentioning = (text: string): number[] =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);

/** Live members of a process group. */
const groupMembers = (pgid: number): number[] =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return fields[0] !== 'Z' && Number(fields[2]) === pgid;
      } catch {
        return false;
      }
    })
    .map(Number);

const stopsCleanly = async (send: (started: Started) => void): Promise<string> => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-npm-start-'));
  let started: Started | undefined;
  try {
    started = await npmStart(dataDir);
    expect(await listening(started.port)).toBe(true);
    expect(processesMentioning(path.join(dataDir, 'postgres')).length).toBeGreaterThan(0);
    send(started);
    expect(await started.exit).toEqual({ code: 0, signal: null });
    expect(await listening(started.port)).toBe(false);
    expect(processesMentioning(path.join(dataDir, 'postgres'))).toEqual([]);
    expect(groupMembers(started.npm.pid as number)).toEqual([]);
    return started.output.join('');
  } finally {
    // Whatever the outcome, nothing of this test keeps running.
    for (const pid of started ? groupMembers(started.npm.pid as number) : []) {
      process.kill(pid, 'SIGKILL');
    }
    for (const pid of processesMentioning(path.join(dataDir, 'postgres'))) {
      process.kill(pid, 'SIGKILL');
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
};

describe.runIf(process.platform === 'linux')('`npm start`', () => {
  it('stops relay and PostgreSQL when a process manager sends SIGTERM to npm', async () => {
    const output = await stopsCleanly(({ npm }) => npm.kill('SIGTERM'));
    expect(output).toContain('"signal":"SIGTERM"');
    expect(output).not.toMatch(/\n\s+at |"stack"|Error:/);
  });

  it('stops on Ctrl-C (SIGINT to the whole foreground group) without a stack trace', async () => {
    const output = await stopsCleanly(({ npm }) => process.kill(-(npm.pid as number), 'SIGINT'));
    expect(output).toContain('"signal":"SIGINT"');
    expect(output).not.toMatch(/\n\s+at |"stack"|Error:/);
  });
});
