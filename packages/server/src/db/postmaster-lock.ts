import { readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * What the number in a data directory's `postmaster.pid` refers to. After a crash that number may
 * name a postmaster that is still dying, a zombie nobody reaps (a container without an init), or,
 * once PIDs have wrapped, any unrelated process. PostgreSQL refuses to start while the number
 * belongs to any live process it may signal, so the relay decides itself, from /proc on Linux:
 * only a live process whose program is `postgres` and whose working directory is this data
 * directory is this directory's PostgreSQL. Elsewhere the answer is "cannot tell", never a guess.
 */

export interface ProcessInfo {
  readonly pid: number;
  /** The kernel's one-letter state: R, S, D, Z (zombie), X (dead)… */
  readonly state: string;
  /** Clock ticks since boot when it started: with the pid, it names one process for good. */
  readonly startTime: string;
  /** Program and working directory; undefined when /proc does not tell us (another user's). */
  readonly exe: string | undefined;
  readonly cwd: string | undefined;
}

export type LockState =
  | { readonly kind: 'absent' }
  | { readonly kind: 'stale'; readonly reason: string }
  | { readonly kind: 'postgres'; readonly pid: number }
  | { readonly kind: 'unknown'; readonly pid: number };

export const HAS_PROC = process.platform === 'linux';

const readLink = (file: string): string | undefined => {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
};

/** The process as /proc shows it, or undefined when there is no such process. Linux only. */
export const processInfo = (pid: number): ProcessInfo | undefined => {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name, in parentheses, may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    pid,
    state: fields[0] ?? '?',
    startTime: fields[19] ?? '?',
    exe: readLink(`/proc/${pid}/exe`)?.replace(/ \(deleted\)$/, ''),
    cwd: readLink(`/proc/${pid}/cwd`),
  };
};

export const isGone = (info: ProcessInfo | undefined): boolean =>
  info === undefined || info.state === 'Z' || info.state === 'X';

const realDir = (dir: string): string => {
  try {
    return realpathSync(dir);
  } catch {
    return path.resolve(dir);
  }
};

/** A live `postgres` process working in this data directory (a postmaster or one of its children). */
export const servesDirectory = (info: ProcessInfo | undefined, databaseDir: string): boolean =>
  !isGone(info) &&
  info?.exe !== undefined &&
  path.basename(info.exe) === 'postgres' &&
  info.cwd === realDir(databaseDir);

export const lockFile = (databaseDir: string): string => path.join(databaseDir, 'postmaster.pid');

export const readLockPid = (databaseDir: string): number | undefined => {
  let text: string;
  try {
    text = readFileSync(lockFile(databaseDir), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : 0;
};

/** Whether a server started by us could signal it: PostgreSQL's own test of its lock file. */
const isSignalable = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // no such process, or another user's (EPERM): PostgreSQL goes on too
  }
};

export const inspectLock = (databaseDir: string): LockState => {
  const pid = readLockPid(databaseDir);
  if (pid === undefined) return { kind: 'absent' };
  if (pid === 0) return { kind: 'stale', reason: 'no process number in it' };
  if (!HAS_PROC) {
    return isSignalable(pid)
      ? { kind: 'unknown', pid }
      : { kind: 'stale', reason: 'no such process' };
  }
  const info = processInfo(pid);
  if (info === undefined) return { kind: 'stale', reason: 'no such process' };
  if (isGone(info)) return { kind: 'stale', reason: 'the process is a zombie' };
  if (!servesDirectory(info, databaseDir)) {
    return { kind: 'stale', reason: "the process is not this directory's PostgreSQL" };
  }
  return { kind: 'postgres', pid };
};

/**
 * Every live `postgres` process working in this data directory: after its postmaster was killed,
 * its backends still hold the old shared memory for a moment, and a new server must not start
 * beside them. Linux only (elsewhere empty).
 */
export const postgresProcessesIn = (databaseDir: string): number[] => {
  if (!HAS_PROC) return [];
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && servesDirectory(processInfo(pid), databaseDir)) found.push(pid);
  }
  return found;
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until check() is true or the time is up; returns the last answer. */
export const waitFor = async (check: () => boolean, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
};
