import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { npmStart, type NpmStart } from './support/npm-start.ts';

/**
 * `npm start` stopped the way a process manager or a terminal stops it. npm runs the script
 * through `sh -c`, and a shell does not pass signals on: the relay must be the shell's own
 * process (exec), so that the SIGTERM npm forwards reaches it.
 */
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

const stopsCleanly = async (send: (started: NpmStart) => void): Promise<string> => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-npm-start-'));
  let started: NpmStart | undefined;
  try {
    started = await npmStart({ DATA_DIR: dataDir });
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
