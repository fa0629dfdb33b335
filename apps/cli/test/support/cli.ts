import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

/** The command as users run it: the bin shim, under the same Node as the tests. */
export const BIN = fileURLToPath(new URL('../../bin/privcomm.js', import.meta.url));

const created: string[] = [];

/** A new empty directory under the system's temporary directory, removed by removeTempDirs. */
export const tempDir = (prefix: string): string => {
  const dir = mkdtempSync(path.join(tmpdir(), `privcomm-${prefix}-`));
  created.push(dir);
  return dir;
};

/** Removes every directory tempDir made in this test file (call it in afterAll). */
export const removeTempDirs = (): void => {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
};

/** A HOME of its own, so that no test ever reads or writes the real ~/.privcomm. */
const HOME = tempDir('home');

const cliEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '',
  HOME,
  ...extra,
});

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON lines (empty if it is not JSON). */
  readonly json: any[];
}

const parseJsonLines = (text: string): any[] => {
  try {
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line));
  } catch {
    return [];
  }
};

/**
 * The command line that runs `privcomm ARGS`: under the tests' Node, and inside a network
 * namespace when one is given (the NAT tests; `ip netns exec` execs, so the child is Node).
 */
const command = (args: readonly string[], netns?: string): [string, string[]] =>
  netns === undefined
    ? [process.execPath, [BIN, ...args]]
    : ['ip', ['netns', 'exec', netns, process.execPath, BIN, ...args]];

export interface RunOptions {
  readonly input?: string;
  readonly env?: Record<string, string>;
  /** Run inside this network namespace. */
  readonly netns?: string;
  /** Killed (and the test fails on its result) after this long. */
  readonly timeoutMs?: number;
}

/** Runs `privcomm ARGS` to completion. */
export const runCli = (args: readonly string[], options: RunOptions = {}): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(...command(args, options.netns), {
      env: cliEnv(options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, json: parseJsonLines(stdout) });
    });
    child.stdin.end(options.input ?? '');
  });

/** A long-running `privcomm` (listen, link), read line by line as it goes. */
export class RunningCli {
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];
  private readonly exited: Promise<number | null>;
  /** The process ended and its output is read to the end ('close' comes after the last 'data'). */
  private closed = false;

  private constructor(readonly child: ChildProcess) {
    const collect = (stream: NodeJS.ReadableStream | null, lines: string[]) => {
      let buffered = '';
      stream?.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        const parts = buffered.split('\n');
        buffered = parts.pop() ?? '';
        lines.push(...parts.filter((line) => line !== ''));
      });
    };
    collect(child.stdout, this.stdoutLines);
    collect(child.stderr, this.stderrLines);
    this.exited = new Promise((resolve) =>
      child.once('close', (code) => {
        this.closed = true;
        resolve(code);
      }),
    );
  }

  static start(
    args: readonly string[],
    options: { env?: Record<string, string>; netns?: string } = {},
  ): RunningCli {
    const child = spawn(...command(args, options.netns), {
      env: cliEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new RunningCli(child);
  }

  /** stdout lines parsed as JSON (--json). */
  get json(): any[] {
    return this.stdoutLines.map((line) => JSON.parse(line));
  }

  /** Waits until `predicate` holds, failing with what the process printed after `timeoutMs`. */
  async until(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.closed || Date.now() > deadline) {
        throw new Error(
          `${what}: not seen (exit ${this.child.exitCode})\nstdout:\n${this.stdoutLines.join('\n')}\nstderr:\n${this.stderrLines.join('\n')}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Waits for a JSON line on stdout matching `predicate`, and returns it. */
  async untilJson(predicate: (line: any) => boolean, what: string, timeoutMs?: number) {
    await this.until(() => this.json.some(predicate), what, timeoutMs);
    return this.json.find(predicate);
  }

  /** Sends `signal` (if still running) and waits for the exit code, killing it if it hangs. */
  async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 15_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  wait(): Promise<number | null> {
    return this.exited;
  }
}

/**
 * A loopback port with nothing listening on it: a privileged port no test binds (a port bound and
 * released could be taken by another test file before it is used), and not one that fetch refuses
 * to dial (port 1 is on its "bad ports" list).
 */
export const CLOSED_PORT = 2;

/** Every file of a directory with its mode and a hash of its bytes: compare before and after. */
export const snapshotDir = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((name) => {
        const file = path.join(dir, name);
        const stats = statSync(file);
        const mode = (stats.mode & 0o777).toString(8);
        if (stats.isDirectory()) return [name, `${mode} directory`];
        const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
        return [name, `${mode} ${hash}`];
      }),
  );

/** The one line a failing command prints: "privcomm: ...", no stack trace. */
export const expectOneErrorLine = (result: CliResult): string => {
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  if (lines.length !== 1 || !lines[0]!.startsWith('privcomm: ') || /\n\s+at /.test(result.stderr))
    throw new Error(`expected one "privcomm: " line on stderr, got:\n${result.stderr}`);
  return lines[0]!;
};

/** Registers each profile on `server` at once, checks that each succeeded, returns the account ids. */
export const registerProfiles = async <const P extends readonly string[]>(
  server: string,
  ...profiles: P
): Promise<{ -readonly [K in keyof P]: string }> => {
  const results = await Promise.all(
    profiles.map((profile) =>
      runCli(['--profile', profile, '--server', server, '--json', 'register']),
    ),
  );
  for (const result of results) expect(result.code, result.stderr).toBe(0);
  return results.map((result) => result.json[0].accountId as string) as {
    -readonly [K in keyof P]: string;
  };
};
