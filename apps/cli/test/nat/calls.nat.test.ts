import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  productionCoturnConfig,
  spawnRelay,
  startCoturn,
  type Coturn,
  type RelayProcess,
} from '@privcomm/server/testing';
import { removeTempDirs, RunningCli, runCli, tempDir } from '../support/cli.ts';
import { renumber, type Lab, type Router, type RouterKind } from './network.ts';
import { recordResult } from './results.ts';

/**
 * Voice calls between `privcomm` processes behind real NATs (network.ts builds them; run.ts runs
 * this file inside the lab's public namespace, where the relay, coturn and PostgreSQL run). Each
 * scenario is one CLI call with a tone, whose summary says which candidate pair carried it.
 * coturn runs config/turnserver.conf as shipped, with the lab's addresses and a certificate made
 * for this run: STUN and TURN on UDP and TCP 3478, TURN over TLS on TCP 443.
 */

const labJson = process.env.PRIVCOMM_NAT_LAB;
const tlsJson = process.env.PRIVCOMM_NAT_TLS;
if (!labJson || !tlsJson)
  throw new Error('the NAT scenarios run inside their network lab: use `npm run test:nat`');
const lab = JSON.parse(labJson) as Lab;
const tls = JSON.parse(tlsJson) as { cert: string; key: string };
const resultsFile = process.env.PRIVCOMM_NAT_RESULTS;

const TONE_HZ = 440;
const ANSWER_TONE_HZ = 880;
/** Scenario 5's call: long enough for ICE to notice the change and recover or give up. */
const CHANGE_CALL_SECONDS = 45;
/** Every CLI process of a scenario is killed (and the test fails) after this long. */
const PROCESS_MS = 60_000;

/**
 * The relay's TURN_URLS, as docs/calls.md recommends: UDP and TCP on 3478, and TLS on 443 plus
 * plain TCP on the same port (coturn's TLS listener accepts both) for networks that let out
 * only TCP 443. WebRTC stacks check a `turns:` certificate against their own built-in roots,
 * so with this run's self-signed certificate the plain-TCP entry is what gets through here.
 * PRIVCOMM_NAT_TURN_URLS replaces the list, to watch a scenario fail without its mechanism
 * (docs/calls.md: "How the NAT tests can fail").
 */
const turnUrls = process.env.PRIVCOMM_NAT_TURN_URLS?.split(',') ?? [
  `turn:${lab.turnAddress}:3478?transport=udp`,
  `turn:${lab.turnAddress}:3478?transport=tcp`,
  `turns:${lab.turnAddress}:443?transport=tcp`,
  `turn:${lab.turnAddress}:443?transport=tcp`,
];

let database: { url: string; drop: () => Promise<void> };
let coturn: Coturn;
let relay: RelayProcess;
const running: RunningCli[] = [];

/** A user on the client host behind `kind`'s router. */
interface User {
  readonly name: string;
  readonly profile: string;
  readonly router: Router;
  id: string;
}

const user = (name: string, kind: RouterKind): User => ({
  name,
  profile: tempDir(name),
  router: lab.routers[kind],
  id: '',
});

const users = {
  // Scenarios 1 and 5: verified contacts behind a full-cone and a port-restricted NAT.
  alice: user('alice', 'full-cone'),
  bob: user('bob', 'port-restricted'),
  // Scenario 2: a symmetric NAT calls a port-restricted one.
  carol: user('carol', 'symmetric'),
  // Scenario 3: behind the firewall that lets out TCP 443 only.
  dave: user('dave', 'tcp443-only'),
  // Scenario 4: contacts not verified, behind cone NATs.
  erin: user('erin', 'full-cone'),
  frank: user('frank', 'port-restricted'),
};

const cli = async (who: User, ...args: string[]): Promise<any[]> => {
  const result = await runCli(['--profile', who.profile, '--json', ...args], {
    netns: who.router.host.namespace,
    timeoutMs: PROCESS_MS,
  });
  expect(result.code, `${who.name} ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.json;
};

const start = (who: User, ...args: string[]): RunningCli => {
  const process = RunningCli.start(['--profile', who.profile, '--json', ...args], {
    netns: who.router.host.namespace,
  });
  running.push(process);
  return process;
};

/** Both add each other as contacts and, if `verified`, mark each other's safety number verified. */
const introduce = async (a: User, b: User, verified: boolean): Promise<void> => {
  await Promise.all([
    cli(a, 'contacts', 'add', b.name, b.id),
    cli(b, 'contacts', 'add', a.name, a.id),
  ]);
  if (verified) await Promise.all([cli(a, 'verify', b.name), cli(b, 'verify', a.name)]);
};

interface CallOutcome {
  /** The caller's and the callee's summaries. */
  readonly caller: any;
  readonly callee: any;
  readonly callerCode: number | null;
  readonly calleeCode: number | null;
  readonly calleeProcess: RunningCli;
  readonly callerProcess: RunningCli;
}

/**
 * `callee` answers (with an 880 Hz tone), `caller` calls with a 440 Hz tone; `during` runs once
 * the call is connected. Both processes run to their end.
 */
const call = async (
  caller: User,
  callee: User,
  options: {
    duration?: number;
    args?: string[];
    calleeArgs?: string[];
    during?: () => Promise<void>;
    /** How long each process may take to exit once the call is under way. */
    processMs?: number;
  } = {},
): Promise<CallOutcome> => {
  const answer = start(
    callee,
    'answer',
    '--timeout',
    '30',
    '--tone',
    String(ANSWER_TONE_HZ),
    ...(options.calleeArgs ?? []),
  );
  await answer.until(
    () => answer.stderrLines.some((line) => line.startsWith('waiting for a call')),
    `${callee.name} is waiting`,
    PROCESS_MS,
  );
  const dial = start(
    caller,
    'call',
    callee.name,
    '--tone',
    String(TONE_HZ),
    '--duration',
    String(options.duration ?? 3),
    ...(options.args ?? []),
  );
  if (options.during) {
    await dial.until(
      () => dial.stderrLines.some((line) => /connected/.test(line)),
      'connected',
      PROCESS_MS,
    );
    await options.during();
  }
  const [callerCode, calleeCode] = await Promise.all([
    exitOf(dial, options.processMs ?? PROCESS_MS),
    exitOf(answer, options.processMs ?? PROCESS_MS),
  ]);
  return {
    caller: dial.json.find((line) => line.type === 'call-ended'),
    callee: answer.json.find((line) => line.type === 'call-ended'),
    callerCode,
    calleeCode,
    callerProcess: dial,
    calleeProcess: answer,
  };
};

/** Waits for a process to exit, killing it (and failing) after `ms`. */
const exitOf = async (process: RunningCli, ms: number): Promise<number | null> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>(
    (resolve) => (timer = setTimeout(() => resolve('timeout'), ms)),
  );
  const result = await Promise.race([process.wait(), timeout]);
  clearTimeout(timer);
  if (result === 'timeout') {
    await process.stop('SIGKILL');
    throw new Error(
      `did not exit within ${ms} ms\nstdout:\n${process.stdoutLines.join('\n')}\nstderr:\n${process.stderrLines.join('\n')}`,
    );
  }
  return result;
};

const PROBE = fileURLToPath(new URL('./stun-probe.ts', import.meta.url));

/** stun-probe.ts run on `who`'s host: what its network lets through to a STUN server. */
const runProbe = async (who: User, ...args: string[]): Promise<Record<string, unknown>> => {
  const { stdout } = await promisify(execFile)(
    'ip',
    [
      'netns',
      'exec',
      who.router.host.namespace,
      process.execPath,
      '--import',
      'tsx',
      PROBE,
      ...args,
    ],
    { timeout: 20_000 },
  );
  return JSON.parse(stdout) as Record<string, unknown>;
};

/** The candidates a call's --ice-log says this side received. */
const received = (file: string): string[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { direction: string; candidate: string })
    .filter((entry) => entry.direction === 'received')
    .map((entry) => entry.candidate);

/** The addresses in a candidate line that name `who`'s network: its LAN, its router's WAN. */
const addressesOf = (line: string, who: User): string[] =>
  line
    .split(' ')
    .filter((token) => token.startsWith(who.router.lanSubnet) || token === who.router.wanAddress);

const pathOf = (summary: any): string =>
  summary?.path ? `${summary.path.local}-${summary.path.remote}` : (summary?.reason ?? 'none');

const heardTone = (summary: any, hz: number): boolean =>
  typeof summary?.dominantHz === 'number' && Math.abs(summary.dominantHz - hz) <= 10;

/** The path as seen by the side whose own candidate is a relay (the caller's if both). */
const relayedLeg = (outcome: CallOutcome): any =>
  [outcome.caller?.path, outcome.callee?.path].find((path) => path?.local === 'relay');

/** Records the scenario's row for the table. */
const record = (scenario: string, outcome: CallOutcome, note?: string): void => {
  const { caller, callee } = outcome;
  const connectedAt = caller?.connected ? caller.endedAt - caller.durationMs : undefined;
  recordResult(resultsFile, {
    scenario,
    connected: caller?.connected === true && callee?.connected === true,
    path: pathOf(caller),
    transport: (relayedLeg(outcome) ?? caller?.path)?.transport ?? '-',
    setupMs: connectedAt === undefined ? undefined : connectedAt - caller.startedAt,
    toneHeard: heardTone(callee, TONE_HZ),
    ...(note === undefined ? {} : { note }),
  });
};

/** Both sides connected and each heard the other's tone. */
const expectToneBothWays = (outcome: CallOutcome): void => {
  expect(outcome.callerCode, outcome.callerProcess.stderrLines.join('\n')).toBe(0);
  expect(outcome.calleeCode, outcome.calleeProcess.stderrLines.join('\n')).toBe(0);
  expect(outcome.caller).toMatchObject({ connected: true, reason: 'hung-up' });
  expect(outcome.callee).toMatchObject({ connected: true });
  expect(Math.abs(outcome.callee.dominantHz - TONE_HZ)).toBeLessThanOrEqual(10);
  expect(Math.abs(outcome.caller.dominantHz - ANSWER_TONE_HZ)).toBeLessThanOrEqual(10);
};

beforeAll(async () => {
  database = await createTestDatabase();
  const secret = randomBytes(32).toString('hex');
  coturn = await startCoturn(
    secret,
    productionCoturnConfig(secret, ({ minPort, maxPort }) => [
      `listening-ip=${lab.turnAddress}`,
      // Where startCoturn checks that it answers.
      'listening-ip=127.0.0.1',
      `relay-ip=${lab.turnAddress}`,
      'listening-port=3478',
      'tls-listening-port=443',
      `cert=${tls.cert}`,
      `pkey=${tls.key}`,
      `min-port=${minPort}`,
      `max-port=${maxPort}`,
    ]),
    { port: 3478 },
  );
  relay = await spawnRelay(database.url, {
    HOST: lab.relayAddress,
    PORT: '443',
    REGISTRATION: 'open',
    TURN_URLS: turnUrls.join(','),
    TURN_SECRET: secret,
  });
  const server = `http://${lab.relayAddress}:443`;
  const all = Object.values(users);
  await Promise.all(
    all.map(async (who) => {
      const [registered] = await cli(who, '--server', server, 'register');
      who.id = registered.accountId;
    }),
  );
  await Promise.all([
    introduce(users.alice, users.bob, true),
    introduce(users.carol, users.bob, true),
    introduce(users.dave, users.bob, true),
    introduce(users.erin, users.frank, false),
  ]);
}, 180_000);

afterAll(async () => {
  for (const process of running) await process.stop('SIGKILL');
  await relay?.stop();
  await coturn?.stop();
  await database?.drop();
  removeTempDirs();
});

describe('calls across NATs', () => {
  it('1. cone NATs, verified contacts: direct (no relay), the tone is heard', async () => {
    const outcome = await call(users.alice, users.bob);
    record('1 cone/cone verified', outcome);
    expectToneBothWays(outcome);
    for (const summary of [outcome.caller, outcome.callee]) {
      expect(summary.relay).toBe(false);
      expect(['host', 'srflx', 'prflx']).toContain(summary.path.local);
      expect(['host', 'srflx', 'prflx']).toContain(summary.path.remote);
    }
  });

  it('2. symmetric NAT: through TURN over UDP', async () => {
    const outcome = await call(users.carol, users.bob);
    record('2 symmetric/cone verified', outcome);
    expectToneBothWays(outcome);
    // The symmetric NAT's mappings differ per destination, so no direct pair works: media goes
    // through a TURN allocation over UDP, whichever side holds it.
    for (const summary of [outcome.caller, outcome.callee])
      expect(summary).toMatchObject({ relay: true, relayOnly: false });
    expect(relayedLeg(outcome)).toMatchObject({ local: 'relay', transport: 'udp' });
  });

  it('3. TCP 443 only: through TURN over TCP on 443, and the summary says so', async () => {
    const outcome = await call(users.dave, users.bob);
    record('3 tcp443-firewall/cone', outcome);
    expectToneBothWays(outcome);
    expect(outcome.caller).toMatchObject({ relay: true, relayOnly: false });
    expect(outcome.caller.path).toMatchObject({ local: 'relay', transport: 'tcp' });
  });

  it('3b. TCP 443 only: coturn answers STUN over TLS on 443 with the certificate, through the firewall', async () => {
    const probe = await runProbe(users.dave, 'tls', lab.turnAddress, '443', tls.cert);
    expect(probe).toMatchObject({
      bindingOk: true,
      verified: true,
      protocol: expect.stringMatching(/^TLSv1\.[23]$/),
    });
    // And plain UDP to 3478 does not get out: the firewall is real.
    const udp = await runProbe(users.dave, 'udp', lab.turnAddress, '3478');
    expect(udp).toMatchObject({ bindingOk: false });
  });

  it('4. unverified contacts behind cone NATs: relay-only, no address of the other side arrives', async () => {
    const logs = {
      erin: path.join(users.erin.profile, 'ice.jsonl'),
      frank: path.join(users.frank.profile, 'ice.jsonl'),
    };
    const outcome = await call(users.erin, users.frank, {
      args: ['--ice-log', logs.erin],
      calleeArgs: ['--ice-log', logs.frank],
    });
    record('4 cone/cone unverified', outcome);
    expectToneBothWays(outcome);
    for (const summary of [outcome.caller, outcome.callee])
      expect(summary).toMatchObject({
        relay: true,
        relayOnly: true,
        path: { local: 'relay', remote: 'relay' },
      });
    for (const [who, other] of [
      [users.erin, users.frank],
      [users.frank, users.erin],
    ] as const) {
      const lines = received(logs[who.name as 'erin' | 'frank']);
      expect(lines.length, `${who.name} received candidates`).toBeGreaterThan(0);
      for (const line of lines) {
        expect(line, `${who.name} received`).toMatch(/ typ relay /);
        expect(addressesOf(line, other), `${who.name} learnt ${other.name}'s address`).toEqual([]);
      }
    }
  });

  it(
    '5. an address change mid-call: the call ends on both sides, saying the connection was lost',
    { timeout: 180_000 },
    async () => {
      const oldAddress = users.bob.router.wanAddress;
      let changedAt = 0;
      const outcome = await call(users.alice, users.bob, {
        duration: CHANGE_CALL_SECONDS,
        // The side whose address changed sends its hang-up on a keep-alive connection that died
        // with the old address: that request times out (15 s) before a new one gets through.
        processMs: 100_000,
        during: async () => {
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          renumber(users.bob.router);
          changedAt = Date.now();
        },
      });
      expect(users.bob.router.wanAddress).not.toBe(oldAddress);
      const endedAfter = (summary: any) => `${((summary.endedAt - changedAt) / 1000).toFixed(1)} s`;
      record(
        '5 address change mid-call',
        outcome,
        `ended ${endedAfter(outcome.caller)} (caller) and ${endedAfter(outcome.callee)} (callee) after the change: "${outcome.caller?.detail}"`,
      );
      // Media flowed before the change; then each side ended the call itself, well before the
      // duration would have (the caller's hang-up would say "hung-up"), with a reason people read.
      // (The call connected, so both commands exit 0, as for any call that connected.)
      expect([outcome.callerCode, outcome.calleeCode]).toEqual([0, 0]);
      for (const summary of [outcome.caller, outcome.callee]) {
        expect(summary).toMatchObject({ connected: true, reason: 'failed' });
        expect(summary.detail).toMatch(/^the connection was lost/);
      }
      expect(heardTone(outcome.callee, TONE_HZ)).toBe(true);
    },
  );
});
