import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../src/program.ts';
import { parseSyncDelay } from '../src/run-context.ts';
import {
  CLOSED_PORT,
  expectOneErrorLine,
  runCli,
  snapshotDir,
  removeTempDirs,
  tempDir,
} from './support/cli.ts';

/**
 * The command line without a relay: help, usage errors, profile directories, and relays that are
 * down or are not relays. Help and usage run in-process (fast, same code as the binary); the
 * rest runs the real binary as a child process.
 */

const collect = () => {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { stream, text: () => text };
};

const runInProcess = async (args: string[], input = '') => {
  const stdout = collect();
  const stderr = collect();
  const stdin = new PassThrough();
  stdin.end(input);
  const home = tempDir('home');
  const code = await run(args, {
    env: { HOME: home },
    stdin,
    stdout: stdout.stream,
    stderr: stderr.stream,
    onSignal: () => () => undefined,
  });
  return { code, stdout: stdout.text(), stderr: stderr.text(), json: [] as any[] };
};

afterAll(() => removeTempDirs());

/** Every command of the interface (apps/cli/README.md). */
const COMMANDS = [
  'register',
  'whoami',
  'contacts',
  'contacts add',
  'contacts link',
  'contacts list',
  'contacts sync',
  'phone',
  'phone set',
  'phone remove',
  'phone show',
  'send',
  'receive',
  'listen',
  'daemon',
  'call',
  'answer',
  'history',
  'typing',
  'delete',
  'disappear',
  'safety-number',
  'verify',
  'accept-identity',
  'devices',
  'devices list',
  'devices add',
  'devices remove',
  'link',
  'delete-account',
  'group',
  'group create',
  'group add',
  'group remove',
  'group promote',
  'group rename',
  'group leave',
  'group list',
  'group info',
];

describe('help', () => {
  it('lists every command, with the exit codes and examples', async () => {
    const result = await runInProcess(['--help']);
    expect(result.code).toBe(0);
    for (const command of COMMANDS.filter((c) => !c.includes(' ')))
      expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    expect(result.stdout).toContain('Exit codes: 0 success, 1 failure');
    expect(result.stdout).toMatch(/--server <url>[\s\S]*--profile <dir>[\s\S]*--json/);
    expect(result.stderr).toBe('');
  });

  it.each(COMMANDS)('explains "%s" with an example', async (command) => {
    const result = await runInProcess([...command.split(' '), '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: privcomm ${command}`);
    expect(result.stdout).toMatch(/Examples?:\n {2}\$ privcomm /);
    expect(result.stderr).toBe('');
  });

  it('"help --help" and "help COMMAND" show help and exit 0', async () => {
    for (const args of [
      ['help', '--help'],
      ['help'],
      ['help', 'send'],
      ['help', 'devices', 'add'],
    ]) {
      const result = await runInProcess(args);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stdout).toContain('Usage: privcomm');
      expect(result.stderr).toBe('');
    }
  });

  it.each(COMMANDS)('shows the global options in the help of "%s"', async (command) => {
    const result = await runInProcess([...command.split(' '), '--help']);
    expect(result.stdout).toMatch(
      /Global Options:\n[\s\S]*--server <url>[\s\S]*--profile <dir>[\s\S]*--json/,
    );
  });

  it('works through the installed binary', async () => {
    const result = await runCli(['send', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: privcomm send [options] [contact] [text]');
  });
});

describe('usage errors', () => {
  it.each([
    [['frobnicate'], /^privcomm: unknown command 'frobnicate'.*\(see "privcomm --help"\)$/],
    [['send'], /^privcomm: missing required argument 'contact' \(see "privcomm send --help"\)$/],
    [['send', 'bob', 'hi', 'extra'], /too many arguments/],
    [
      ['receive', '--bogus'],
      /^privcomm: unknown option '--bogus' \(see "privcomm receive --help"\)$/,
    ],
    [['receive', '--timeout', 'soon'], /--timeout must be a number of seconds/],
    [['disappear', 'bob', '-5'], /unknown option '-5'|SECONDS must be/],
    [['disappear', 'bob', 'tomorrow'], /SECONDS must be a number of seconds/],
    [['disappear', 'bob', '1.5'], /SECONDS must be a whole number/],
    [['devices', 'remove', 'first'], /a device id is a positive whole number/],
    [['devices', 'remove', '128'], /a device id is a positive whole number up to 127/],
    [['contacts', 'add', 'bob', 'not-an-id'], /"not-an-id" is not an account id/],
    [['contacts', 'add', ' ', '2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'], /the contact name is empty/],
    [['contacts', 'add', 'bob', '--link', 'x', '--phone', '+15551230002'], /give either/],
    [
      ['contacts', 'add', 'bob', '--link', 'https://x.org/y'],
      /not a privcomm contact link: it should start with/,
    ],
    [
      ['contacts', 'add', 'bob', '--link', 'privcomm://contact/2b4f0f2c?relay=https%3A%2F%2Fr.org'],
      /the account id in it is not valid/,
    ],
    [['--server', 'ftp://relay', 'whoami'], /must be an http:\/\/ or https:\/\/ URL/],
    [['--server', 'not a url', 'whoami'], /is not a URL/],
    [['verify', 'bob', '123'], /a safety number is 60 digits/],
    [['send', 'bob'], /the message is empty; nothing was sent/],
    [['call'], /missing required argument 'contact'/],
    [['call', 'bob', '--tone', '5'], /--tone must be a frequency in Hz \(20 to 20000\)/],
    [['call', 'bob', '--tone', '440', '--play', 'x.wav'], /give --tone or --play, not both/],
    [['contacts', 'add', 'bob'], /give either their account id, --phone NUMBER or --link LINK/],
    [
      ['contacts', 'add', 'bob', '2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11', '--phone', '+15551230002'],
      /give either their account id, --phone NUMBER or --link LINK/,
    ],
    [['contacts', 'add', 'bob', '--phone', '+12'], /invalid phone number: not a possible/],
    [['contacts', 'add', 'bob', '--phone', '555 123 0002'], /no country code/],
    [
      ['contacts', 'add', 'bob', '--phone', '555 123 0002', '--country', 'XX'],
      /not a country code/,
    ],
    [['phone', 'set', '+1 555'], /invalid phone number/],
    [['phone', 'set'], /missing required argument 'number'/],
    [['register', '--phone', 'call me'], /invalid phone number/],
    [['call', 'bob', '--duration', '0'], /--duration must be more than 0 seconds/],
    [['call', 'bob', '--ring-timeout', 'never'], /--ring-timeout must be a number of seconds/],
    [['answer', '--timeout', 'soon'], /--timeout must be a number of seconds/],
    [['listen', '--decline', '--busy'], /give --decline or --busy, not both/],
  ])('%j exits 2 with one line', async (args, pattern) => {
    const result = await runInProcess(args);
    expect(result.code).toBe(2);
    expect(expectOneErrorLine(result)).toMatch(pattern);
    expect(result.stdout).toBe('');
  });

  it('without a command: help on stderr, exit 2', async () => {
    const result = await runInProcess([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Usage: privcomm');
    expect(result.stdout).toBe('');
  });

  it('exits 2 from the real binary too', async () => {
    const result = await runCli(['contacts', 'add', 'bob', '--phone', '12']);
    expect(result.code).toBe(2);
    expect(expectOneErrorLine(result)).toMatch(/^privcomm: invalid phone number: /);
  });
});

describe('PRIVCOMM_SYNC_DELAY', () => {
  it('reads MIN-MAX or one number of seconds; unset is the default', () => {
    expect(parseSyncDelay(undefined)).toBeUndefined();
    expect(parseSyncDelay(' ')).toBeUndefined();
    expect(parseSyncDelay('10-180')).toEqual({ minMs: 10_000, maxMs: 180_000 });
    expect(parseSyncDelay(' 0 ')).toEqual({ minMs: 0, maxMs: 0 });
  });

  it.each(['soon', '5-2', '-3', '1.5', '0-3601', '10-'])(
    'refuses %j, saying what to set',
    (value) => {
      expect(() => parseSyncDelay(value)).toThrow(/PRIVCOMM_SYNC_DELAY must be seconds as MIN-MAX/);
    },
  );
});

describe('profile directories', () => {
  it('a missing profile is an error for everything but register and link, and is not created', async () => {
    const dir = path.join(tempDir('missing'), 'nothing-here');
    for (const args of [['whoami'], ['contacts', 'list'], ['receive'], ['send', 'bob', 'hi']]) {
      const result = await runInProcess(['--profile', dir, ...args]);
      expect(result.code).toBe(1);
      expect(expectOneErrorLine(result)).toBe(
        `privcomm: there is no profile at ${dir}: run "privcomm register" (or "privcomm link") first, or pass --profile DIR`,
      );
    }
    expect(existsSync(dir)).toBe(false);
  });

  it('a profile path that is a file is refused', async () => {
    const file = path.join(tempDir('file'), 'profile');
    writeFileSync(file, 'not a directory');
    const result = await runCli(['--profile', file, 'register']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      `privcomm: the profile ${file} is not a directory; pass --profile DIR`,
    );
  });

  it('PRIVCOMM_PROFILE names the profile; the default is ~/.privcomm', async () => {
    const dir = path.join(tempDir('env'), 'p');
    const viaEnv = await runCli(['whoami'], { env: { PRIVCOMM_PROFILE: dir } });
    expect(expectOneErrorLine(viaEnv)).toContain(`there is no profile at ${dir}:`);
    const byDefault = await runCli(['whoami']);
    expect(expectOneErrorLine(byDefault)).toMatch(/there is no profile at \/.*\/\.privcomm:/);
  });

  it('a damaged profile gives one line, exit 1, and every file stays as it was', async () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        'client store is garbage',
        (dir) => writeFileSync(path.join(dir, 'client.sqlite'), 'garbage '.repeat(100)),
        /client store .* is damaged: it is not a SQLite database\. Nothing was changed/,
      ],
      [
        'key store is garbage',
        (dir) => writeFileSync(path.join(dir, 'engine.sqlite'), 'garbage '.repeat(100)),
        /key store .* is damaged: it is not a SQLite database/,
      ],
      [
        'device key is garbage',
        (dir) => writeFileSync(path.join(dir, 'auth.key'), '-----BEGIN PRIVATE KEY-----\nAAAA\n'),
        /device key .* is damaged: cannot read the key/,
      ],
      [
        'a directory where a file belongs',
        (dir) => mkdirSync(path.join(dir, 'client.sqlite')),
        /client.sqlite is not a file/,
      ],
    ];
    for (const [name, damage, pattern] of cases) {
      const dir = tempDir('damaged');
      damage(dir);
      const before = snapshotDir(dir);
      // register would create the missing files of a new profile: it must not start on a damaged one.
      for (const args of [['register'], ['link'], ['whoami']]) {
        const result = await runInProcess([
          '--profile',
          dir,
          '--server',
          'http://127.0.0.1:9',
          ...args,
        ]);
        expect(result.code, `${name}: ${args.join(' ')}`).toBe(1);
        expect(expectOneErrorLine(result), name).toMatch(pattern);
      }
      expect(snapshotDir(dir), name).toEqual(before);
    }
  });
});

describe('relays that are down or are not relays', () => {
  let htmlServer: http.Server;
  let jsonServer: http.Server;
  let htmlUrl: string;
  let jsonUrl: string;

  const serve = (body: string, type: string) =>
    new Promise<[http.Server, string]>((resolve) => {
      const server = http.createServer((_request, response) => {
        response.writeHead(200, { 'content-type': type });
        response.end(body);
      });
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        resolve([
          server,
          `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
        ]);
      });
    });

  beforeAll(async () => {
    [htmlServer, htmlUrl] = await serve('<html><body>It works!</body></html>', 'text/html');
    [jsonServer, jsonUrl] = await serve('{}', 'application/json');
  });
  afterAll(async () => {
    await new Promise((resolve) => htmlServer?.close(resolve));
    await new Promise((resolve) => jsonServer?.close(resolve));
  });

  it('a relay that is down: one line naming the server and what to do, exit 1', async () => {
    const port = CLOSED_PORT;
    const dir = tempDir('down');
    const result = await runCli([
      '--profile',
      dir,
      '--server',
      `http://127.0.0.1:${port}`,
      'register',
    ]);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      `privcomm: cannot reach the relay at http://127.0.0.1:${port}: connection refused. Is the relay running? (server: http://127.0.0.1:${port}; change it with --server URL)`,
    );
    expect(result.stdout).toBe('');
  });

  it('https:// to a plain-HTTP server: one line naming TLS and what to do, no OpenSSL internals', async () => {
    const httpsUrl = jsonUrl.replace('http://', 'https://');
    const dir = tempDir('tls');
    const result = await runCli(['--profile', dir, '--server', httpsUrl, 'register']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      `privcomm: cannot reach the relay at ${httpsUrl}: no TLS answer (TLS_FAILED). If the relay serves plain HTTP, use --server ${jsonUrl}`,
    );
    expect(result.stderr).not.toMatch(/SSL routines|openssl|\\n/i);
  });

  it('a register that fails leaves the profile as it was: nothing created, nothing kept', async () => {
    // A profile directory that does not exist yet stays absent...
    const parent = tempDir('failed-register');
    const fresh = path.join(parent, 'profile');
    const down = ['--server', `http://127.0.0.1:${CLOSED_PORT}`];
    const result = await runCli(['--profile', fresh, ...down, 'register']);
    expect(result.code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    // ...an empty one stays empty, with its own mode...
    const empty = tempDir('failed-register-empty');
    const before = snapshotDir(empty);
    expect((await runCli(['--profile', empty, ...down, 'register'])).code).toBe(1);
    expect(snapshotDir(empty)).toEqual(before);
    // ...and so does a failed link.
    expect((await runCli(['--profile', empty, ...down, 'link'])).code).toBe(1);
    expect(snapshotDir(empty)).toEqual(before);
    expect((await runCli(['--profile', fresh, ...down, 'link'])).code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
  });

  it('PRIVCOMM_SERVER is used when --server is not given', async () => {
    const port = CLOSED_PORT;
    const result = await runCli(['--profile', tempDir('env-server'), 'register'], {
      env: { PRIVCOMM_SERVER: `http://127.0.0.1:${port}/` },
    });
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toContain(
      `cannot reach the relay at http://127.0.0.1:${port}:`,
    );
  });

  it('a web server that is not a relay', async () => {
    const result = await runCli(['--profile', tempDir('html'), '--server', htmlUrl, 'register']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toBe(
      `privcomm: the server at ${htmlUrl} did not answer like a privcomm relay (HTTP 200). Check that ${htmlUrl} is a privcomm relay of this version (change it with --server URL)`,
    );
  });

  it('a server answering JSON that makes no sense: still one line, and no account recorded', async () => {
    const dir = tempDir('json');
    const result = await runCli(['--profile', dir, '--server', jsonUrl, 'register']);
    expect(result.code).toBe(1);
    expect(expectOneErrorLine(result)).toContain(`Check that ${jsonUrl} is a privcomm relay`);
    const whoami = await runCli(['--profile', dir, 'whoami']);
    expect(expectOneErrorLine(whoami)).toContain('has no account yet');
  });
});
