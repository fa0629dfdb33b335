/**
 * CPU time and memory of processes, read from /proc (Linux). The benchmark compares servers by
 * CPU per message rather than by throughput alone: on a shared machine throughput moves with the
 * neighbours' load, CPU per message much less.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** Kernel clock ticks per second for utime/stime (USER_HZ; 100 on every mainstream Linux). */
const TICKS_PER_SECOND = 100;

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime, in ticks. */
  readonly ticks: number;
}

const readStat = (pid: number): ProcStat | undefined => {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone
  }
  // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
};

export const commandLine = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
};

/** Every live process with its parent, from one scan of /proc. */
const allProcesses = (): ProcStat[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((stat): stat is ProcStat => stat !== undefined);

/** Live processes whose command line passes `test`. */
export const findProcesses = (test: (cmdline: string) => boolean): number[] =>
  allProcesses()
    .map(({ pid }) => pid)
    .filter((pid) => test(commandLine(pid)));

/** `root` and all its descendants. */
export const processTree = (root: number): number[] => {
  const children = new Map<number, number[]>();
  for (const { pid, ppid } of allProcesses()) {
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree: number[] = [];
  const visit = (pid: number): void => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
};

/** CPU ticks per process, at one moment. */
export type CpuSnapshot = ReadonlyMap<number, number>;

export const snapshotCpu = (pids: readonly number[]): CpuSnapshot =>
  new Map(
    pids.flatMap((pid) => {
      const stat = readStat(pid);
      return stat ? [[pid, stat.ticks] as const] : [];
    }),
  );

/**
 * CPU microseconds spent between two snapshots by the processes alive at the second. A process
 * that appeared in between counts from zero; one that ended in between is lost (the benchmark
 * keeps its connections open, so that does not happen on the measured paths).
 */
export const cpuMicroseconds = (start: CpuSnapshot, end: CpuSnapshot): number => {
  let ticks = 0;
  for (const [pid, endTicks] of end) ticks += endTicks - (start.get(pid) ?? 0);
  return (ticks * 1_000_000) / TICKS_PER_SECOND;
};

/** Resident memory of one process, in KiB (0 if it is gone). */
export const rssKiB = (pid: number): number => {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(match?.[1] ?? 0);
  } catch {
    return 0;
  }
};

/** The 1-, 5- and 15-minute load averages: every figure is printed with the load it ran under. */
export const loadAverage = (): [number, number, number] => {
  const [one, five, fifteen] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number);
  return [one ?? 0, five ?? 0, fifteen ?? 0];
};

/** Busy CPU time of the whole machine (all cores), in microseconds since boot. */
export const machineBusyMicroseconds = (): number => {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1);
  const values = (fields ?? []).map(Number);
  // user nice system idle iowait irq softirq steal: busy is everything but idle and iowait.
  const busy = values.reduce(
    (sum, value, index) => (index === 3 || index === 4 ? sum : sum + value),
    0,
  );
  return (busy * 1_000_000) / TICKS_PER_SECOND;
};

/**
 * A command's exit status and output, without blocking the event loop. The orchestrator starts
 * ejabberd while the relay and the account maker start: the first run that did so with spawnSync
 * lost a minute to a hung accounts' process (killed at its deadline, as in commit fda26b1, where
 * a blocked loop hung it every time); none of the runs since, with this, did.
 */
export const runCommand = (
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {},
): Promise<{ status: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(command, args, { ...options, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ status: code, stdout, stderr });
    });
  });
