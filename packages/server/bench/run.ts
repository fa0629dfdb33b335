/**
 * `npm run bench`: the relay and ejabberd side by side on this machine, in one run, with the
 * machine's own limits measured beside them (docs/benchmarks.md). Each system runs on the same
 * PostgreSQL, in a database of its own created here and dropped at the end; the load comes from a
 * separate process (load.ts) so that its CPU is never the server's. Prints a table and one JSON
 * document; asserts nothing (the numbers are not a test).
 *
 *   npm run bench -- --help    (the options: USAGE below)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { RELAY_NODE_FLAGS } from '../src/node-flags.ts';
import { COMPILED_DIR, compileBenchScript } from './lib/compile.ts';
import { ensureEjabberdInstalled, startEjabberd, type Ejabberd } from './lib/ejabberd.ts';
import {
  cpuMicroseconds,
  findProcesses,
  loadAverage,
  machineBusyMicroseconds,
  processTree,
  rssKiB,
  runCommand,
  snapshotCpu,
  type CpuSnapshot,
} from './lib/proc.ts';
import type { LoginKind, SendTransport } from './lib/relay-target.ts';
import { describeDurability, readDurability, type Durability } from './lib/relay-metrics.ts';
import {
  ratios,
  ratioTable,
  shareOfLimit,
  table,
  type Measurement,
  type Percentiles,
} from './lib/stats.ts';
import type { Job, JobTarget, LoadResult, SoakSample } from './load.ts';

const SERVER_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SCENARIOS = ['online', 'fixed-rate', 'offline', 'idle', 'client', 'soak', 'limits'];
const USAGE = `npm run bench [-- options]: the relay beside ejabberd on this machine (docs/benchmarks.md)

  --quick                   the short form (under 3 minutes): smaller sizes, every scenario
  --only LIST               some scenarios, comma-separated: ${SCENARIOS.join(',')}
  --no-ejabberd             the relay alone
  --transport KIND          how the relay's load generator sends: websocket (default: its
                            socket, binary frames), websocket-json (its socket, JSON frames,
                            for a relay without binary frames) or http
  --login KIND              how its clients log in: socket (default: by signature on the
                            message socket) or http (challenge and token first, for a relay
                            without the login on the socket)
  --json FILE               also write the JSON document to FILE
  --rates LIST              the fixed-rate scenario's rates per second (default 4000,8000)
  --soak-seconds N          the soak's length (default 120; 20 with --quick)
  --soak-rate N             the soak's rate per second (default half the online rate)
  --without-queue-triggers  measure without the queue-usage triggers (caps unchecked)
  --relay-root DIR          another checkout's packages/server, for a before/after
  --admin-url URL           a PostgreSQL on which databases may be created and dropped
                            (default BENCH_ADMIN_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres)
  --help                    this text
`;
const OPTIONS = {
  help: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  only: { type: 'string' },
  'no-ejabberd': { type: 'boolean', default: false },
  transport: { type: 'string', default: 'websocket' },
  login: { type: 'string', default: 'socket' },
  json: { type: 'string' },
  rates: { type: 'string' },
  'soak-seconds': { type: 'string' },
  'soak-rate': { type: 'string' },
  'without-queue-triggers': { type: 'boolean', default: false },
  'relay-root': { type: 'string', default: SERVER_ROOT },
  'admin-url': {
    type: 'string',
    default: process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  },
} as const; // described in USAGE
/** Stops with a clear message and the usage, for arguments that cannot run. */
const usageError = (message: string): never => {
  process.stderr.write(`npm run bench: ${message}\n\n${USAGE}`);
  process.exit(2);
};
const options = (() => {
  try {
    return parseArgs({ options: OPTIONS }).values;
  } catch (error) {
    return usageError((error as Error).message);
  }
})();
if (options.help === true) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const QUICK = options.quick === true;
/** A numeric option's value, or a clear error naming the option. */
const positiveInteger = (value: string, option: string): number => {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 1) {
    usageError(`${option} takes a positive whole number, not "${value}"`);
  }
  return number;
};
/**
 * Open files a server or load process may hold. 20,000 idle sessions need more than 20,000 (each
 * session is a socket, plus the database and the process's own files), and this machine's default
 * is exactly 20,000, soft and hard: hence 19,000 when the hard limit cannot be raised (it needs
 * CAP_SYS_RESOURCE, which even root lacks in some containers: tried once here, at start).
 */
const FILE_LIMIT = 65_536;
const canRaiseFileLimit =
  existsSync('/usr/bin/prlimit') &&
  spawnSync('/usr/bin/prlimit', [`--nofile=${FILE_LIMIT}:${FILE_LIMIT}`, '--', 'true']).status ===
    0;
/** argv for a child process, run with FILE_LIMIT open files where that is allowed. */
const withFileLimit = (command: string, args: string[]): [string, string[]] =>
  canRaiseFileLimit
    ? ['/usr/bin/prlimit', [`--nofile=${FILE_LIMIT}:${FILE_LIMIT}`, '--', command, ...args]]
    : [command, args];
const ONLY = new Set(options.only?.split(',') ?? SCENARIOS);
for (const scenario of ONLY) {
  if (!SCENARIOS.includes(scenario)) usageError(`--only: no scenario named "${scenario}"`);
}
if (!['websocket', 'websocket-json', 'http'].includes(options.transport)) {
  usageError(`--transport is websocket, websocket-json or http, not "${options.transport}"`);
}
const TRANSPORT = options.transport as SendTransport;
if (!['socket', 'http'].includes(options.login)) {
  usageError(`--login is socket or http, not "${options.login}"`);
}
const LOGIN = options.login as LoginKind;
const POOL_SIZE = 10;

/** The scenarios' sizes: the issue's, or a short form for everyday use (under 3 minutes). */
const PLAN = {
  online: { pairs: 200, inFlight: 4, seconds: QUICK ? 5 : 20, bytes: 1024 },
  rates:
    options.rates?.split(',').map((rate) => positiveInteger(rate, '--rates')) ??
    (QUICK ? [4000] : [4000, 8000]),
  fixedSeconds: QUICK ? 5 : 15,
  offline: QUICK ? [50] : [50, 500],
  idle: QUICK ? [2000] : [5000, canRaiseFileLimit ? 20000 : 19000],
  limitSeconds: QUICK ? 5 : 15,
  /** Scenario 5: texts the bot sends one after the other, then receives. */
  clientMessages: QUICK ? 100 : 300,
  /** Scenario 6: seconds of soak at half the online rate, and how often it is sampled. */
  soakSeconds: positiveInteger(options['soak-seconds'] ?? (QUICK ? '20' : '120'), '--soak-seconds'),
  soakSampleSeconds: QUICK ? 4 : 30,
};

const log = (line: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
};

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The PostgreSQL processes that work for `database`, and the shared ones that write for all. */
const databasePids = (database: string): number[] =>
  findProcesses(
    (cmd) =>
      cmd.startsWith('postgres: ') &&
      (cmd.includes(` ${database} `) || /: (checkpointer|background writer|walwriter)$/.test(cmd)),
  );

interface System {
  readonly name: string;
  readonly target: JobTarget;
  serverPids(): number[];
  databasePids(): number[];
  /** The process whose RSS is the server's memory. */
  readonly mainPid: number;
  /** The relay's: how its sends were made durable so far (lib/relay-metrics.ts). */
  readonly durability?: () => Promise<Durability | undefined>;
  readonly databaseUrl: string;
}

interface Snapshot {
  server: CpuSnapshot;
  database: CpuSnapshot;
  rssKiB: number;
  /** The load generator's own CPU; the whole machine's busy time, in µs. */
  loadGenerator: CpuSnapshot;
  machineBusyUs: number;
  atMs: number;
}

const snapshot = (system: System, loadGeneratorPid: number): Snapshot => ({
  server: snapshotCpu(system.serverPids()),
  database: snapshotCpu(system.databasePids()),
  rssKiB: rssKiB(system.mainPid),
  loadGenerator: snapshotCpu([loadGeneratorPid]),
  machineBusyUs: machineBusyMicroseconds(),
  atMs: performance.now(),
});

/** CPU between two marks, per message: server, database, and both. */
const cpuPer = (
  start: Snapshot | undefined,
  end: Snapshot | undefined,
  messages: number | undefined,
): Pick<Measurement, 'cpuPerMessageUs' | 'serverCpuPerMessageUs' | 'databaseCpuPerMessageUs'> => {
  if (!start || !end || !messages) return {};
  const server = cpuMicroseconds(start.server, end.server) / messages;
  const database = cpuMicroseconds(start.database, end.database) / messages;
  return {
    cpuPerMessageUs: server + database,
    serverCpuPerMessageUs: server,
    databaseCpuPerMessageUs: database,
  };
};

/**
 * What else the machine did between two marks: the load generator's CPU per message, and how busy
 * both cores were. On 2 cores the load generator and the server share the machine, so a server
 * that used a core while the machine was saturated was bounded by the machine, not by itself
 * (docs/benchmarks.md, item 42).
 */
const machineShare = (
  start: Snapshot | undefined,
  end: Snapshot | undefined,
  messages: number | undefined,
): Pick<Measurement, 'loadGeneratorCpuPerMessageUs' | 'machineBusyPercent'> => {
  if (!start || !end || !messages || end.atMs <= start.atMs) return {};
  const elapsedUs = (end.atMs - start.atMs) * 1000;
  return {
    loadGeneratorCpuPerMessageUs:
      cpuMicroseconds(start.loadGenerator, end.loadGenerator) / messages,
    machineBusyPercent:
      (100 * (end.machineBusyUs - start.machineBusyUs)) / (elapsedUs * os.cpus().length),
  };
};

/** The note's part that says what `machineShare` measured. */
const machineNote = (share: ReturnType<typeof machineShare>): string =>
  share.loadGeneratorCpuPerMessageUs === undefined || share.machineBusyPercent === undefined
    ? ''
    : `load generator ${Math.round(share.loadGeneratorCpuPerMessageUs)} µs/msg, machine ${Math.round(share.machineBusyPercent)} % busy`;

/** bench/`script` compiled to JavaScript (lib/compile.ts), once per run. */
const compiled = new Map<string, Promise<string>>();
const benchScript = (script: string): Promise<string> => {
  let file = compiled.get(script);
  if (!file) {
    file = compileBenchScript(script);
    compiled.set(script, file);
  }
  return file;
};

/** Runs one load-generator process; returns its result and the snapshots taken at its marks. */
const runLoad = async (
  script: string,
  args: string[],
  system: System | undefined,
): Promise<{ result: LoadResult; marks: Map<string, Snapshot>; load: number }> => {
  const child = spawn(...withFileLimit(process.execPath, [await benchScript(script), ...args]), {
    cwd: SERVER_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const marks = new Map<string, Snapshot>();
  let result: LoadResult | undefined;
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      const event = JSON.parse(line) as { mark?: string; result?: LoadResult };
      if (event.mark && system) marks.set(event.mark, snapshot(system, child.pid as number));
      if (event.result) result = event.result;
    }
  });
  const code = await new Promise<number>((resolve) =>
    child.once('exit', (status) => resolve(status ?? 1)),
  );
  if (code !== 0 || !result)
    throw new Error(`${script} ${args[0]?.slice(0, 80)} failed (exit ${code})`);
  return { result, marks, load: loadAverage()[0] };
};

/** Cores the servers (and the PostgreSQL processes working for them) used of a quiet half second. */
const QUIET_CORES = 0.1;

/**
 * Waits, for at most 20 s, until every server is quiet: one still closing the sessions of its
 * last scenario would otherwise work through the next scenario's window, on the cores the other
 * server is being measured on. ejabberd spent 2-3 s at 100-130 % of a core after the 19,000
 * sessions of scenario 4 closed, into the relay's online scenario that followed (2026-12-06).
 */
const untilQuiet = async (systems: readonly System[]): Promise<void> => {
  const pids = (): number[] =>
    systems.flatMap((system) => [...system.serverPids(), ...system.databasePids()]);
  const started = performance.now();
  for (;;) {
    const before = snapshotCpu(pids());
    await sleep(500);
    const cores = cpuMicroseconds(before, snapshotCpu(pids())) / 500_000;
    if (cores < QUIET_CORES) return;
    if (performance.now() - started > 20_000) {
      log(`the servers still used ${Math.round(cores * 100)} % of a core after 20 s: going on`);
      return;
    }
  }
};

/** A load process's run, and the relay's durability counters just before it (relay-metrics.ts). */
type JobRun = Awaited<ReturnType<typeof runLoad>> & { durableBefore: Durability | undefined };

/**
 * One scenario on one system, once every server is quiet; a failure is reported as a row, and the
 * run goes on.
 */
const runJob = async (
  systems: readonly System[],
  system: System,
  job: Job,
  scenario: string,
  rows: Measurement[],
): Promise<JobRun | undefined> => {
  await untilQuiet(systems);
  const durableBefore = await system.durability?.();
  try {
    const run = await runLoad('load.ts', [JSON.stringify({ job, target: system.target })], system);
    return { ...run, durableBefore };
  } catch (error) {
    log(`${scenario} on ${system.name} failed: ${(error as Error).message}`);
    rows.push({ scenario, system: system.name, load: loadAverage()[0], note: 'FAILED (see log)' });
    return undefined;
  }
};

const vacuum = async (system: System): Promise<void> => {
  // Autovacuum may be off on a shared development cluster (it is here): clean up between runs so
  // that one scenario's dead rows do not slow the next. Not a production setting.
  const client = new pg.Client({ connectionString: system.databaseUrl });
  await client.connect();
  await client.query('VACUUM ANALYZE');
  // And write out what the scenario dirtied now, not in the next scenario's window, whose CPU per
  // message counts the checkpointer: after the idle scenario's 24,000 logins, the online window
  // counted 53 µs of PostgreSQL per message, against 10 without them (2026-12-05).
  await client.query('CHECKPOINT').catch((error: unknown) => {
    log(`CHECKPOINT refused (${(error as Error).message}): scenarios may pay for the one before`);
  });
  await client.end();
};

const latencyOf = (value: unknown): Percentiles | undefined => value as Percentiles | undefined;

/** Sends still waiting for their acceptance when the run ended are a backlog, not a loss. */
const backlogNote = (result: LoadResult): string =>
  (result.unaccepted ?? 0) > 0
    ? `${result.unaccepted} sent and neither accepted nor received at the end (backlog, not lost)`
    : '';

/** The relay's online rate measured in this run: the soak offers half of it. */
let relayOnlineRate: number | undefined;
/** Scenario 6's samples, for the JSON document. */
let soakSamples: SoakSample[] | undefined;

const scenarios = async (systems: System[], rows: Measurement[]): Promise<void> => {
  const online = PLAN.online;
  const onlineName = `1 online ${online.pairs}×${online.inFlight} 1KiB`;
  // Idle sessions first, on servers that have carried no messages yet: their memory figure is
  // the growth of the resident set, and garbage that earlier scenarios left in the heap, collected
  // while the sessions logged in, made it negative (-12.1 MiB per 1,000 on 2026-12-04).
  if (ONLY.has('idle')) {
    for (const sessions of PLAN.idle) {
      const name = `4 idle ${sessions} sessions`;
      for (const system of systems) {
        log(`${name}: ${system.name}`);
        const run = await runJob(systems, system, { scenario: 'idle', sessions }, name, rows);
        if (!run) continue;
        const { result, marks, load } = run;
        const before = marks.get('login.start')?.rssKiB ?? 0;
        const after = marks.get('idle')?.rssKiB ?? 0;
        rows.push({
          scenario: name,
          system: system.name,
          rate: result.rate,
          ...cpuPer(marks.get('login.start'), marks.get('login.end'), sessions),
          memoryMiB: ((after - before) / 1024) * (1000 / sessions),
          load,
          note: 'rate: full logins/s; CPU per login; MiB per 1,000 sessions',
        });
        await vacuum(system);
      }
    }
  }
  if (ONLY.has('online')) {
    for (const system of systems) {
      log(`${onlineName}: ${system.name}`);
      const run = await runJob(
        systems,
        system,
        { scenario: 'online', ...online },
        onlineName,
        rows,
      );
      if (!run) continue;
      const durability = describeDurability(run.durableBefore, await system.durability?.());
      const { result, marks, load } = run;
      if (system.name === 'privcomm') relayOnlineRate = result.rate;
      const share = machineShare(marks.get('start'), marks.get('end'), result.messages);
      rows.push({
        scenario: onlineName,
        system: system.name,
        rate: result.rate,
        ...cpuPer(marks.get('start'), marks.get('end'), result.messages),
        ...share,
        latency: latencyOf(result.latency),
        acceptance: latencyOf(result.acceptance),
        memoryMiB: (marks.get('end')?.rssKiB ?? 0) / 1024,
        lost: result.lost,
        duplicates: result.duplicates,
        load,
        note: [
          (result.failures ?? 0) > 0 ? `${result.failures} sends failed` : '',
          backlogNote(result),
          durability,
          machineNote(share),
        ]
          .filter(Boolean)
          .join('; '),
      });
      await vacuum(system);
    }
  }
  if (ONLY.has('fixed-rate')) {
    for (const rate of PLAN.rates) {
      const name = `2 fixed ${rate}/s`;
      for (const system of systems) {
        log(`${name}: ${system.name}`);
        const job: Job = {
          scenario: 'fixed-rate',
          pairs: online.pairs,
          rate,
          seconds: PLAN.fixedSeconds,
          bytes: 1024,
        };
        const run = await runJob(systems, system, job, name, rows);
        if (!run) continue;
        const durability = describeDurability(run.durableBefore, await system.durability?.());
        const { result, marks, load } = run;
        const share = machineShare(marks.get('start'), marks.get('end'), result.messages);
        rows.push({
          scenario: name,
          system: system.name,
          rate: result.rate,
          ...cpuPer(marks.get('start'), marks.get('end'), result.messages),
          ...share,
          latency: latencyOf(result.latency),
          acceptance: latencyOf(result.acceptance),
          lost: result.lost,
          duplicates: result.duplicates,
          load,
          note: [
            result.held ? 'held' : 'NOT held (backlog grew)',
            backlogNote(result),
            durability,
            machineNote(share),
          ]
            .filter(Boolean)
            .join('; '),
        });
        await vacuum(system);
      }
    }
  }
  if (ONLY.has('offline')) {
    // The online scenarios deliver without writing: the offline scenario is the first to run the
    // servers' store and queue-read paths, and its first measured round paid for compiling them
    // (V8's JIT in the relay). A second 200 × 50 against the same relay stored 1.4× and drained
    // 1.3× faster, at 0.3-0.4× the relay's CPU per stored message (docs/benchmarks.md, item
    // 47). A server that has run for a while is warm, as the online scenario's warm-up assumes:
    // each system first gets an unmeasured round of the smaller size, then the clean-up every
    // scenario gets.
    for (const system of systems) {
      const messages = PLAN.offline[0] as number;
      const name = `3 offline warm-up ${online.pairs}×${messages}`;
      log(`${name}: ${system.name}`);
      const job: Job = { scenario: 'offline', pairs: online.pairs, messages, bytes: 1024 };
      const warmUp = await runJob(systems, system, job, name, rows);
      const { lost = 0, notStored = 0 } = warmUp?.result ?? {};
      if (lost + notStored > 0) log(`${name}: ${lost} lost, ${notStored} never stored`);
      await vacuum(system);
    }
    for (const messages of PLAN.offline) {
      const base = `3 offline ${online.pairs}×${messages}`;
      for (const system of systems) {
        log(`${base}: ${system.name}`);
        const job: Job = { scenario: 'offline', pairs: online.pairs, messages, bytes: 1024 };
        const run = await runJob(systems, system, job, base, rows);
        if (!run) continue;
        const { result, marks, load } = run;
        rows.push({
          scenario: `${base} store`,
          system: system.name,
          rate: result.storeRate,
          ...cpuPer(marks.get('store.start'), marks.get('store.end'), result.messages),
          lost: result.notStored,
          load,
          note:
            [
              result.notStored ? `${result.notStored} messages never stored (dropped)` : '',
              result.failures ? `${result.failures} sends failed` : '',
            ]
              .filter(Boolean)
              .join('; ') || undefined,
        });
        rows.push({
          scenario: `${base} drain`,
          system: system.name,
          rate: result.drainRate,
          ...cpuPer(marks.get('drain.start'), marks.get('drain.end'), result.messages),
          latency: latencyOf(result.drainPerRecipient),
          lost: result.lost,
          duplicates: result.duplicates,
          load,
          note: `latency: login → a recipient's last message; ${result.stored} left stored`,
        });
        await vacuum(system);
      }
    }
  }
  const relay = systems.find((system) => system.name === 'privcomm');
  if (ONLY.has('soak') && relay) {
    // Half load: half of the online rate measured just now, or 1,000/s without it.
    const rate =
      options['soak-rate'] === undefined
        ? Math.max(100, Math.round((relayOnlineRate ?? 2000) / 2))
        : positiveInteger(options['soak-rate'], '--soak-rate');
    const name = `6 soak ${rate}/s ${PLAN.soakSeconds} s`;
    log(`${name}: privcomm`);
    const job: Job = {
      scenario: 'soak',
      pairs: online.pairs,
      rate,
      seconds: PLAN.soakSeconds,
      sampleSeconds: PLAN.soakSampleSeconds,
      bytes: 1024,
    };
    const run = await runJob(systems, relay, job, name, rows);
    if (run) {
      const durability = describeDurability(run.durableBefore, await relay.durability?.());
      const { result, marks, load } = run;
      const samples = result.samples ?? [];
      soakSamples = samples;
      const first = samples[0];
      const last = samples.at(-1);
      const p99s = samples.map((sample) => sample.p99 ?? 0);
      const maxRows = Math.max(0, ...samples.map((sample) => sample.queueRows ?? 0));
      const maxDead = Math.max(0, ...samples.map((sample) => sample.deadRows ?? 0));
      const f = (value: number | undefined, digits = 0): string => (value ?? 0).toFixed(digits);
      rows.push({
        scenario: name,
        system: 'privcomm',
        rate: result.rate,
        ...cpuPer(marks.get('start'), marks.get('end'), result.messages),
        memoryMiB: (marks.get('end')?.rssKiB ?? 0) / 1024,
        lost: result.lost,
        duplicates: result.duplicates,
        load,
        note:
          `p99 send→receive (online recipients) first / last / worst period ${f(first?.p99)} / ${f(last?.p99)} / ${f(Math.max(...p99s))} ms; queue rows ${f(first?.queueRows)} → ${f(last?.queueRows)} (max ${maxRows}); ` +
          `dead rows max ${maxDead}; table ${f(first?.tableMiB, 1)} → ${f(last?.tableMiB, 1)} MiB; ` +
          [
            `${samples.filter((sample) => sample.vacuumed).length} vacuums`,
            backlogNote(result),
            durability,
          ]
            .filter(Boolean)
            .join('; '),
      });
      const period = (x: SoakSample): string =>
        [
          `  ${f(x.at)}: ${x.received}, ${f(x.p99, 1)}, ${x.queueRows}, ${x.deadRows}, ${f(x.tableMiB, 1)}${x.vacuumed ? ' (vacuum)' : ''}`,
          x.catchUpMs === undefined ? undefined : `longest catch-up ${f(x.catchUpMs)} ms`,
          x.catchingUp &&
            `${x.catchingUp.count} still catching up (${f(x.catchingUp.longestMs)} ms so far)`,
          x.durability,
        ]
          .filter(Boolean)
          .join('; ');
      log(
        `soak samples (s: received, p99 ms, queue rows, dead rows, MiB; catch-ups; how the period's sends were made durable):\n${samples.map(period).join('\n')}`,
      );
      await vacuum(relay);
    }
  }
};

/**
 * The durable path's limit on this machine, without the relay: pgbench enqueues 1 KiB rows in
 * batches of 16 and deletes them in batches of 16, each statement its own durable commit, from
 * 8 clients. Same PostgreSQL, same settings (synchronous_commit on).
 */
const durableLimit = async (
  adminUrl: string,
  database: string,
  scenario: string,
): Promise<Measurement> => {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  await client.query(
    'CREATE TABLE bench_queue (id bigserial PRIMARY KEY, dev int NOT NULL, content bytea NOT NULL); CREATE INDEX ON bench_queue (dev, id)',
  );
  await client.end();
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-pgbench-'));
  const batch = 16;
  const payload = randomBytes(1024).toString('hex');
  writeFileSync(
    path.join(dir, 'queue.sql'),
    `\\set dev random(1, 400)
INSERT INTO bench_queue (dev, content) SELECT :dev, '\\x${payload}'::bytea FROM generate_series(1, ${batch});
DELETE FROM bench_queue WHERE id IN (SELECT id FROM bench_queue WHERE dev = :dev ORDER BY id LIMIT ${batch});
`,
  );
  // pgbench's backends end with it: sample their CPU while it runs and keep the last reading.
  const seen = new Map<number, { first: number; last: number }>();
  const sample = (initial: boolean): void => {
    for (const [pid, ticks] of snapshotCpu(databasePids(database))) {
      const entry = seen.get(pid);
      if (entry) entry.last = ticks;
      else seen.set(pid, { first: initial ? ticks : 0, last: ticks });
    }
  };
  sample(true);
  const sampler = setInterval(() => sample(false), 100);
  const run = spawn(
    'pgbench',
    [
      '-n',
      '-M',
      'prepared',
      '-c',
      '8',
      '-j',
      '2',
      '-T',
      String(PLAN.limitSeconds),
      '-f',
      path.join(dir, 'queue.sql'),
      url.toString(),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  run.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await new Promise((resolve) => run.once('exit', resolve));
  clearInterval(sampler);
  rmSync(dir, { recursive: true, force: true });
  const tps = Number(/tps = ([\d.]+)/.exec(output)?.[1] ?? 0);
  const rate = tps * batch;
  const messages = rate * PLAN.limitSeconds;
  let ticks = 0;
  for (const { first, last } of seen.values()) ticks += last - first;
  const databaseCpu = messages > 0 ? (ticks * 10_000) / messages : undefined;
  return {
    scenario,
    system: 'durable limit (pgbench)',
    rate,
    cpuPerMessageUs: databaseCpu,
    serverCpuPerMessageUs: 0,
    databaseCpuPerMessageUs: databaseCpu,
    load: loadAverage()[0],
    note: `batches of ${batch}, 8 clients, one commit per insert batch and per delete batch`,
  };
};

const websocketCeiling = async (scenario: string): Promise<Measurement> => {
  const server = spawn(process.execPath, [await benchScript('ws-ceiling.ts'), 'server'], {
    cwd: SERVER_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.stdout.once('data', (chunk: Buffer) =>
        resolve((JSON.parse(chunk.toString()) as { port: number }).port),
      );
      server.once('exit', () => reject(new Error('ws ceiling server exited')));
    });
    const system: System = {
      name: 'ws ceiling',
      target: { system: 'privcomm', databaseUrl: '' },
      serverPids: () => [server.pid as number],
      databasePids: () => [],
      mainPid: server.pid as number,
      databaseUrl: '',
    };
    const options = {
      port,
      pairs: PLAN.online.pairs,
      inFlight: PLAN.online.inFlight,
      seconds: PLAN.limitSeconds,
      bytes: 1024,
    };
    const { result, marks, load } = await runLoad(
      'ws-ceiling.ts',
      ['client', JSON.stringify(options)],
      system,
    );
    return {
      scenario,
      system: 'ws ceiling (Node + ws, no database)',
      rate: result.rate,
      ...cpuPer(marks.get('start'), marks.get('end'), result.messages),
      load,
      note: 'in-memory forwarder: no auth, validation or storage',
    };
  } finally {
    server.kill('SIGTERM');
  }
};

/**
 * Scenario 5, the client side: packages/engine-node/bench/client-side.ts in a process of its own
 * against the relay (its CPU is the client's, read by itself per phase).
 */
const clientSide = async (relayUrl: string): Promise<Measurement[]> => {
  const name = '5 client (Node engine)';
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join('bench', 'client-side.ts'),
      JSON.stringify({ url: relayUrl, messages: PLAN.clientMessages }),
    ],
    { cwd: path.resolve(SERVER_ROOT, '../engine-node'), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number>((resolve) =>
    child.once('exit', (status) => resolve(status ?? 1)),
  );
  const line = output.split('\n').find((l) => l.startsWith('{"result"'));
  if (code !== 0 || !line) throw new Error(`client-side.ts failed (exit ${code})`);
  const r = (JSON.parse(line) as { result: Record<string, number> }).result as Record<
    string,
    number
  >;
  const load = loadAverage()[0];
  const fmt = (value: number | undefined): string => (value ?? 0).toFixed(0);
  return [
    {
      scenario: `${name}: encrypt + send`,
      system: 'privcomm client',
      rate: r.sendPerCpuSecond,
      cpuPerMessageUs: r.sendCpuPerMessageUs,
      load,
      note: `rate per core (CPU s); ${fmt(r.sendPerSecond)}/s by the clock, one at a time, each awaiting acceptance`,
    },
    {
      scenario: `${name}: receive + decrypt`,
      system: 'privcomm client',
      rate: r.receivePerCpuSecond,
      cpuPerMessageUs: r.receiveCpuPerMessageUs,
      load,
      note: `rate per core (CPU s), with delivery receipts; ${fmt(r.receivePerSecond)}/s by the clock`,
    },
    {
      scenario: `${name}: first contact`,
      system: 'privcomm client',
      latency: { p50: r.firstContactMs, count: 1 },
      load,
      note: `bundle fetch + PQXDH + encrypt + send, ms (a later send: ${(r.nextSendMs ?? 0).toFixed(1)} ms)`,
    },
  ];
};

/**
 * bench/make-accounts.ts with a deadline, tried up to 3 times. Its stdout is a pipe, as the load
 * processes' is: with the orchestrator's stdout (a file) inherited, the child hung every time in
 * tsx's first compile of a changed file (main thread waiting for the esbuild service, which sat
 * idle), when it still ran under tsx (lib/compile.ts). Its other hangs were a deadlock in Node
 * (lib/relay-accounts.ts); the deadline stays for whatever else may come.
 */
const makeRelayAccounts = async (databaseUrl: string, count: number, file: string) => {
  for (let attempt = 1; ; attempt += 1) {
    const child = spawn(
      process.execPath,
      [await benchScript('make-accounts.ts'), databaseUrl, String(count), file],
      { cwd: SERVER_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    // 19,000 accounts take 9 s: a deadline by size, and 15 s at most without a line of progress
    // (make-accounts.ts), so that a hang costs 15 s rather than a minute.
    const deadline = setTimeout(() => child.kill('SIGKILL'), 10_000 + 3 * count);
    let silence = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.on('data', () => {
      clearTimeout(silence);
      silence = setTimeout(() => child.kill('SIGKILL'), 15_000);
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(deadline);
    clearTimeout(silence);
    if (code === 0) return;
    if (attempt >= 3) throw new Error(`make-accounts.ts failed (exit ${code})`);
    log(`making the relay's accounts again (exit ${code})`);
  }
};

/**
 * Builds the relay's bundle in the relay's checkout (`npm run build:server`: dist/bin/main.mjs),
 * which the container image and the bare-metal guide run, so that the benchmark measures that
 * and not `npm start`'s on-the-fly compiler: tsx keeps function names by wrapping every closure
 * the relay makes in a defineProperty call, which cost the online path 14-18 % of its rate
 * (2026-12-06, docs/benchmarks.md).
 */
const buildRelayBundle = async (root: string): Promise<void> => {
  const built = await runCommand(process.execPath, [path.join('scripts', 'bundle.js')], {
    cwd: root,
  });
  if (built.status !== 0) {
    throw new Error(`building the relay's bundle in ${root} failed: ${built.stderr}`);
  }
};

const startRelay = async (
  databaseUrl: string,
  onSpawn: (child: ChildProcess) => void,
): Promise<{ child: ChildProcess; url: string }> => {
  await buildRelayBundle(options['relay-root'] as string);
  const port = await freePort();
  const lifted = '1000000/1';
  // The flags the relay always runs with (src/node-flags.ts), and BENCH_RELAY_NODE_FLAGS, e.g.
  // "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the relay.
  const flags = [
    ...RELAY_NODE_FLAGS,
    ...(process.env.BENCH_RELAY_NODE_FLAGS ?? '').split(' ').filter(Boolean),
  ];
  const child = spawn(
    ...withFileLimit(process.execPath, [...flags, path.join('dist', 'bin', 'main.mjs')]),
    {
      cwd: options['relay-root'],
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: databaseUrl,
        JWT_SECRET: randomBytes(32).toString('base64'),
        PORT: String(port),
        LOG_LEVEL: 'warn',
        DATABASE_POOL_SIZE: String(POOL_SIZE),
        RATE_LIMIT_REGISTRATION: lifted,
        RATE_LIMIT_AUTH: lifted,
        RATE_LIMIT_LOGIN: lifted,
        RATE_LIMIT_MESSAGES: lifted,
        SEND_BYTES_PER_HOUR: String(2 ** 40),
        WS_UNAUTHENTICATED_PER_ADDRESS: '100000',
        // Settings to try, e.g. BENCH_RELAY_ENV="WS_DIRECT_WINDOW_MS=100 WS_WINDOW=64".
        ...Object.fromEntries(
          (process.env.BENCH_RELAY_ENV ?? '')
            .split(' ')
            .filter(Boolean)
            .map((assignment) => {
              const at = assignment.indexOf('=');
              if (at < 1) throw new Error(`BENCH_RELAY_ENV: "${assignment}" is not NAME=value`);
              return [assignment.slice(0, at), assignment.slice(at + 1)];
            }),
        ),
      },
      // The relay logs to stdout at LOG_LEVEL=warn; BENCH_RELAY_STDOUT=1 passes it (and what V8
      // prints there, e.g. with BENCH_RELAY_NODE_FLAGS="--trace-gc") to the benchmark's stderr.
      stdio: ['ignore', process.env.BENCH_RELAY_STDOUT === '1' ? 2 : 'ignore', 'inherit'],
    },
  );
  onSpawn(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i += 1) {
    if (child.exitCode !== null) break;
    // With a deadline: a relay that accepted the connection and never answered held a run for
    // 13 minutes at a load of 12.
    const ok = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { child, url };
    await sleep(200);
  }
  child.kill('SIGKILL');
  throw new Error('the relay did not become ready');
};

const main = async (): Promise<void> => {
  const startedAt = new Date();
  const t0 = performance.now();
  const adminUrl = options['admin-url'] as string;
  const name = `bench_${process.pid}`;
  const databases = [name, `${name}_xmpp`];
  const urlOf = (database: string): string => {
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    return url.toString();
  };
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const serverVersion = (await admin.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v;
  for (const database of databases) await admin.query(`CREATE DATABASE ${database}`);
  /** The servers, stopped together first (ejabberd's stop alone takes seconds). */
  const stops: (() => Promise<void> | void)[] = [];
  /** Then these, last added first. */
  const cleanups: (() => Promise<void> | void)[] = [
    async () => {
      for (const database of databases)
        await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    },
    () => rmSync(COMPILED_DIR, { recursive: true, force: true }),
  ];
  const report = (error: unknown): void => log(`cleanup: ${String(error)}`);
  const cleanup = async (): Promise<void> => {
    await Promise.all(stops.map((stop) => Promise.resolve().then(stop).catch(report)));
    for (const step of cleanups.reverse()) await Promise.resolve().then(step).catch(report);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().then(() => process.exit(130)));
  }
  const rows: Measurement[] = [];
  const users = Math.max(PLAN.online.pairs * 2, ...PLAN.idle);
  // ejabberd's set-up (its schema, users and node: 2-3 s) shares nothing with the relay's, so it
  // runs beside it; neither is measured.
  const ejabberdStarting: Promise<Ejabberd | undefined> =
    !options['no-ejabberd'] && [...ONLY].some((s) => s !== 'limits')
      ? (async () => {
          ensureEjabberdInstalled(log);
          log(`ejabberd on ${name}_xmpp with ${users} users`);
          const ejabberd = await startEjabberd({
            databaseUrl: urlOf(`${name}_xmpp`),
            port: await freePort(),
            users,
            poolSize: POOL_SIZE,
          });
          stops.push(() => ejabberd.stop());
          return ejabberd;
        })()
      : Promise.resolve(undefined);
  // Handled where it is awaited; this keeps a failure before then from crashing the process.
  ejabberdStarting.catch(() => undefined);
  try {
    log(`relay on ${name} (${serverVersion?.split(' ').slice(0, 2).join(' ')})`);
    const [relay, maxSendsInFlight] = await Promise.all([
      startRelay(urlOf(name), (child) =>
        stops.push(async () => {
          if (child.exitCode !== null) return;
          child.kill('SIGTERM');
          await new Promise((resolve) => child.once('exit', resolve));
        }),
      ),
      // The orchestrator reads it once while the relay starts, for every load process.
      import('../src/ws/device-socket.ts').then((module) => module.MAX_SENDS_IN_FLIGHT),
    ]);
    const relayPid = relay.child.pid as number;
    // Accounts for every scenario, made once (scenario 4 needs the most): set-up, not measured.
    const accountsDir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-accounts-'));
    cleanups.push(() => rmSync(accountsDir, { recursive: true, force: true }));
    const accountsFile = path.join(accountsDir, 'accounts.json');
    await makeRelayAccounts(urlOf(name), users, accountsFile);
    log(`${users} relay accounts created`);
    if (options['without-queue-triggers']) {
      const client = new pg.Client({ connectionString: urlOf(name) });
      await client.connect();
      await client.query('ALTER TABLE envelopes DISABLE TRIGGER USER');
      await client.end();
      log('queue-usage triggers disabled (a measurement only: the caps are then unchecked)');
    }
    const systems: System[] = [
      {
        name: 'privcomm',
        target: {
          system: 'privcomm',
          url: relay.url,
          databaseUrl: urlOf(name),
          transport: TRANSPORT,
          login: LOGIN,
          accountsFile,
          maxSendsInFlight,
        },
        serverPids: () => processTree(relayPid),
        databasePids: () => databasePids(name),
        mainPid: relayPid,
        databaseUrl: urlOf(name),
        durability: () => readDurability(relay.url),
      },
    ];
    const ejabberd = await ejabberdStarting;
    if (ejabberd) {
      systems.push({
        name: 'ejabberd',
        target: { system: 'ejabberd', port: ejabberd.port, databaseUrl: urlOf(`${name}_xmpp`) },
        serverPids: () => processTree(ejabberd.pid),
        databasePids: () => databasePids(`${name}_xmpp`),
        mainPid: ejabberd.pid,
        databaseUrl: urlOf(`${name}_xmpp`),
      });
    }
    // What autovacuum would do after the bulk insert of the accounts (it is off here): without
    // statistics PostgreSQL took the 2,000-row devices table for a few pages and hashed it whole
    // for every device-set lookup, 156 µs of its CPU per message at a fixed 4,000/s against 28.
    for (const system of systems) await vacuum(system);
    await scenarios(systems, rows);
    if (ONLY.has('client')) {
      log('5 client side (Node engine)');
      try {
        rows.push(...(await clientSide(relay.url)));
      } catch (error) {
        log(`client side failed: ${(error as Error).message}`);
        rows.push({
          scenario: '5 client (Node engine)',
          system: 'privcomm client',
          load: loadAverage()[0],
          note: 'FAILED (see log)',
        });
      }
    }
    if (ONLY.has('limits')) {
      const onlineName = `1 online ${PLAN.online.pairs}×${PLAN.online.inFlight} 1KiB`;
      log('durable-path limit (pgbench)');
      rows.push(await durableLimit(adminUrl, name, onlineName));
      log('loopback WebSocket ceiling');
      rows.push(await websocketCeiling(onlineName));
    }
  } finally {
    // A relay that failed to start leaves ejabberd starting: it is stopped once it is up.
    await ejabberdStarting.catch(() => undefined);
    await cleanup();
  }
  const list = ratios(rows);
  const online = rows.find(
    (row) => row.system === 'privcomm' && row.scenario.startsWith('1 online'),
  );
  const limit = rows.find((row) => row.system.startsWith('durable limit'));
  const document = {
    startedAt: startedAt.toISOString(),
    minutes: (performance.now() - t0) / 60_000,
    quick: QUICK,
    transport: TRANSPORT,
    login: LOGIN,
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      memoryGiB: os.totalmem() / 2 ** 30,
      loadAtEnd: loadAverage(),
      node: process.version,
      postgres: serverVersion,
    },
    rows,
    soakSamples,
    ratios: list,
    durableShareOfLimit: shareOfLimit(online?.rate, limit?.rate),
  };
  process.stdout.write(`\n${table(rows)}\n\n${ratioTable(list)}\n\n`);
  if (document.durableShareOfLimit !== undefined) {
    process.stdout.write(
      `privcomm online ÷ durable-path limit: ${document.durableShareOfLimit.toFixed(2)}\n\n`,
    );
  }
  process.stdout.write(`${JSON.stringify(document)}\n`);
  if (options.json) writeFileSync(options.json, `${JSON.stringify(document, null, 2)}\n`);
  log(`done in ${document.minutes.toFixed(1)} min`);
};

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
