import { spawn, type ChildProcess } from 'node:child_process';
import { statSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  spawnRelay,
  startRelay,
  type RelayProcess,
  type TestRelay,
  portToRestartOn,
} from '@privcomm/server/testing';
import { BIN, removeTempDirs, runCli, tempDir, registerProfiles } from './support/cli.ts';

/**
 * `privcomm daemon` end to end: a real relay (in this process, on PostgreSQL), and two daemons
 * as child processes, as bots run them: Alice's on stdin/stdout, Bob's on a Unix socket.
 * Messages go both ways, events arrive as notifications, malformed requests get JSON-RPC
 * errors and the daemon keeps serving.
 */

let relay: TestRelay;
let drop: () => Promise<void>;
const alice = tempDir('alice');
const bob = tempDir('bob');
const socketPath = path.join(tempDir('sock'), 'bob.sock');
let aliceId: string;
let bobId: string;

/** One JSON-RPC peer: what it received (answers and notifications), and a way to ask. */
class RpcPeer {
  readonly received: any[] = [];
  readonly raw: string[] = [];
  private nextId = 1;
  private buffered = '';

  constructor(private readonly write: (text: string) => void) {}

  feed(chunk: Buffer): void {
    this.buffered += chunk.toString('utf8');
    const lines = this.buffered.split('\n');
    this.buffered = lines.pop() ?? '';
    for (const line of lines.filter((l) => l !== '')) {
      this.raw.push(line);
      this.received.push(JSON.parse(line));
    }
  }

  send(text: string): void {
    this.write(`${text}\n`);
  }

  async until(predicate: (message: any) => boolean, what: string, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(predicate);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`${what}: not seen; received:\n${this.raw.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** A request; resolves with its whole answer (result or error). */
  async call(method: string, params?: unknown): Promise<any> {
    const id = this.nextId++;
    this.send(
      JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }),
    );
    return this.until((m) => m.id === id && ('result' in m || 'error' in m), `answer ${id}`);
  }
}

const startDaemon = (profile: string, extra: string[] = []) => {
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, '--profile', profile, 'daemon', ...extra],
    { env: { PATH: process.env.PATH ?? '', HOME: profile }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  return { child, stderr, exited };
};

const daemons: ChildProcess[] = [];

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  relay = await startRelay(database.url);
  [aliceId, bobId] = await registerProfiles(relay.url, alice, bob);
  expect((await runCli(['--profile', alice, 'contacts', 'add', 'bob', bobId])).code).toBe(0);
}, 60_000);

afterAll(async () => {
  for (const child of daemons) if (child.exitCode === null) child.kill('SIGKILL');
  await relay?.close();
  await drop?.();
  removeTempDirs();
});

describe('privcomm daemon', () => {
  it('two daemons (stdin/stdout and a Unix socket): messages both ways, notifications, errors', async () => {
    // Bob's daemon on a socket only he may use.
    const bobDaemon = startDaemon(bob, ['--socket', socketPath]);
    daemons.push(bobDaemon.child);
    const deadline = Date.now() + 20_000;
    while (!existsSync(socketPath)) {
      if (Date.now() > deadline || bobDaemon.child.exitCode !== null)
        throw new Error(`no socket: ${bobDaemon.stderr.join('')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    const socket = net.connect(socketPath);
    const bobRpc = new RpcPeer((text) => socket.write(text));
    socket.on('data', (chunk: Buffer) => bobRpc.feed(chunk));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));

    // Alice's daemon on stdin/stdout.
    const aliceDaemon = startDaemon(alice);
    daemons.push(aliceDaemon.child);
    const aliceRpc = new RpcPeer((text) => aliceDaemon.child.stdin!.write(text));
    aliceDaemon.child.stdout!.on('data', (chunk: Buffer) => aliceRpc.feed(chunk));
    await aliceRpc.until((m) => m.method === 'connected', 'alice connected');
    await aliceRpc.until((m) => m.method === 'queue-empty', 'alice up to date');

    expect(await aliceRpc.call('whoami')).toEqual({
      jsonrpc: '2.0',
      id: 1,
      result: {
        accountId: aliceId,
        deviceId: 1,
        server: relay.url,
        profile: alice,
        connected: true,
      },
    });

    // Alice → Bob: an answer with the id, then a notification at Bob's.
    const sent = await aliceRpc.call('send', { recipient: 'bob', message: 'hello from a bot' });
    expect(sent.result).toMatchObject({ type: 'sent', to: bobId, contact: 'bob', status: 'sent' });
    const incoming = await bobRpc.until(
      (m) => m.method === 'message' && m.params.text === 'hello from a bot',
      'message at bob',
    );
    expect(incoming).toMatchObject({
      jsonrpc: '2.0',
      params: { type: 'message', id: sent.result.id, from: aliceId, direction: 'in' },
    });
    expect(incoming).not.toHaveProperty('id');
    // Bob's daemon acknowledged it: Alice hears of the delivery.
    await aliceRpc.until(
      (m) =>
        m.method === 'receipt' &&
        m.params.receipt === 'delivered' &&
        m.params.messageIds.includes(sent.result.id),
      'delivery receipt at alice',
    );

    // Bob → Alice by account id, typing first; then Bob reads and Alice learns it.
    expect((await bobRpc.call('sendTyping', { recipient: aliceId })).result).toEqual({
      type: 'typing',
      to: aliceId,
      typing: true,
    });
    await aliceRpc.until((m) => m.method === 'typing' && m.params.typing === true, 'typing');
    const reply = await bobRpc.call('send', { recipient: aliceId, message: 'hi, bot' });
    expect(reply.result).toMatchObject({ type: 'sent', to: aliceId, status: 'sent' });
    await aliceRpc.until(
      (m) => m.method === 'message' && m.params.text === 'hi, bot' && m.params.contact === 'bob',
      'reply at alice',
    );
    // Read receipts go to contacts only (a stranger's message is a request): Bob accepts Alice.
    expect(
      (await bobRpc.call('addContact', { name: 'alice', accountId: aliceId })).result,
    ).toMatchObject({ name: 'alice', accountId: aliceId });
    expect((await bobRpc.call('markRead', { recipient: aliceId })).result).toEqual({
      conversation: aliceId,
      read: 1,
    });
    await aliceRpc.until(
      (m) => m.method === 'receipt' && m.params.receipt === 'read',
      'read receipt at alice',
    );
    const history = await aliceRpc.call('history', { recipient: 'bob' });
    expect(history.result.map((m: any) => [m.direction, m.text])).toEqual([
      ['out', 'hello from a bot'],
      ['in', 'hi, bot'],
    ]);
    expect((await aliceRpc.call('listContacts')).result).toEqual([
      { name: 'bob', accountId: bobId, expireSeconds: 0, verified: false, identityChanged: false },
    ]);

    // Malformed requests: each answered with its JSON-RPC error, and the daemon goes on.
    aliceRpc.send('this is not JSON');
    await aliceRpc.until((m) => m.error?.code === -32700 && m.id === null, 'parse error');
    aliceRpc.send('{"jsonrpc":"1.0","id":"x","method":"whoami"}');
    await aliceRpc.until((m) => m.error?.code === -32600 && m.id === 'x', 'invalid request');
    aliceRpc.send('[]');
    await aliceRpc.until((m) => m.error?.code === -32600 && m.id === null, 'empty batch');
    expect((await aliceRpc.call('frobnicate')).error).toMatchObject({ code: -32601 });
    expect((await aliceRpc.call('send', { recipient: 'bob' })).error).toMatchObject({
      code: -32602,
      message: 'params.message must be a non-empty string',
    });
    expect((await aliceRpc.call('send', ['bob', 'hi'])).error).toMatchObject({ code: -32602 });
    expect(
      (await aliceRpc.call('send', { recipient: 'bob', message: 'hi', extra: 1 })).error,
    ).toMatchObject({ code: -32602, message: expect.stringContaining('unknown params: extra') });
    expect((await aliceRpc.call('send', { recipient: 'carol', message: 'hi' })).error).toEqual({
      code: -32000,
      message: 'no contact named "carol"; add one with: contacts add NAME ACCOUNT_ID',
      data: { code: 'UNKNOWN_CONTACT' },
    });
    // A notification (no id) is run but not answered; a batch is answered as a batch.
    const before = aliceRpc.received.length;
    aliceRpc.send('{"jsonrpc":"2.0","method":"sendTyping","params":{"recipient":"bob"}}');
    aliceRpc.send(
      '[{"jsonrpc":"2.0","id":"b1","method":"whoami"},{"jsonrpc":"2.0","id":"b2","method":"nope"}]',
    );
    await aliceRpc.until(() => aliceRpc.raw.some((l) => l.startsWith('[')), 'batch answer');
    const batch = JSON.parse(aliceRpc.raw.find((l) => l.startsWith('['))!);
    expect(batch.map((a: any) => [a.id, a.result?.accountId ?? a.error?.code])).toEqual([
      ['b1', aliceId],
      ['b2', -32601],
    ]);
    expect(aliceRpc.raw.slice(before).filter((l) => !l.includes('"method"'))).toHaveLength(1);
    // Still serving.
    expect((await aliceRpc.call('whoami')).result.accountId).toBe(aliceId);

    // The end of stdin stops Alice's daemon; SIGTERM stops Bob's and removes the socket.
    aliceDaemon.child.stdin!.end();
    expect(await aliceDaemon.exited).toBe(0);
    socket.destroy();
    bobDaemon.child.kill('SIGTERM');
    expect(await bobDaemon.exited).toBe(0);
    expect(existsSync(socketPath)).toBe(false);
    for (const stderr of [aliceDaemon.stderr, bobDaemon.stderr])
      expect(stderr.join('')).not.toMatch(/\n\s+at /);
  }, 120_000);
});

describe('privcomm daemon in a group', () => {
  it('lists groups, shows one, sends to it; group messages and receipts arrive as notifications', async () => {
    const carol = tempDir('carol');
    const [carolId] = await registerProfiles(relay.url, carol);
    const created = await runCli([
      '--profile',
      alice,
      '--json',
      'group',
      'create',
      'Crew',
      'bob',
      carolId,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const groupId = created.json[0].groupId;

    const aliceDaemon = startDaemon(alice);
    const bobDaemon = startDaemon(bob);
    daemons.push(aliceDaemon.child, bobDaemon.child);
    const connect = (daemon: ReturnType<typeof startDaemon>) => {
      const rpc = new RpcPeer((text) => daemon.child.stdin!.write(text));
      daemon.child.stdout!.on('data', (chunk: Buffer) => rpc.feed(chunk));
      return rpc;
    };
    const aliceRpc = connect(aliceDaemon);
    const bobRpc = connect(bobDaemon);
    // Bob's daemon learns of the group from the queued change.
    await bobRpc.until(
      (m) => m.method === 'group-changed' && m.params.groupId === groupId,
      'group at bob',
    );
    await aliceRpc.until((m) => m.method === 'queue-empty', 'alice up to date');

    const listed = (await aliceRpc.call('listGroups')).result;
    expect(listed).toEqual([
      expect.objectContaining({ type: 'group', groupId, title: 'Crew', member: true, admin: true }),
    ]);
    const info = (await aliceRpc.call('groupInfo', { group: 'Crew' })).result;
    expect(info.members).toEqual(
      expect.arrayContaining([
        { accountId: aliceId, admin: true },
        { accountId: bobId, contact: 'bob', admin: false, safety: 'not-verified' },
        { accountId: carolId, admin: false, safety: 'not-verified' },
      ]),
    );

    const sent = (await aliceRpc.call('send', { group: 'Crew', message: 'hello crew' })).result;
    expect(sent).toMatchObject({
      type: 'sent',
      group: groupId,
      title: 'Crew',
      status: 'sent',
      recipients: { [bobId]: 'sent', [carolId]: 'sent' },
    });
    const incoming = await bobRpc.until(
      (m) => m.method === 'message' && m.params.text === 'hello crew',
      'group message at bob',
    );
    expect(incoming.params).toMatchObject({ id: sent.id, group: groupId, from: aliceId });
    // Bob's daemon acknowledged it: his receipt reaches Alice's, naming the group and Bob.
    await aliceRpc.until(
      (m) =>
        m.method === 'receipt' &&
        m.params.receipt === 'delivered' &&
        m.params.group === groupId &&
        m.params.from === bobId,
      'delivery receipt from bob',
    );
    expect((await bobRpc.call('markRead', { group: groupId })).result).toEqual({
      conversation: groupId,
      read: 1,
    });
    await aliceRpc.until(
      (m) => m.method === 'receipt' && m.params.receipt === 'read' && m.params.from === bobId,
      'read receipt from bob',
    );
    const [mine] = (await aliceRpc.call('history', { group: 'Crew' })).result;
    expect(mine).toMatchObject({ id: sent.id, receipts: { members: 2, delivered: 1, read: 1 } });

    expect(
      (await aliceRpc.call('send', { recipient: 'bob', group: 'Crew', message: 'x' })).error,
    ).toMatchObject({ code: -32602, message: 'give params.recipient or params.group, not both' });
    expect((await aliceRpc.call('groupInfo', { group: 'Nope' })).error).toMatchObject({
      code: -32000,
      data: { code: 'UNKNOWN_GROUP' },
    });

    aliceDaemon.child.stdin!.end();
    bobDaemon.child.stdin!.end();
    expect(await aliceDaemon.exited).toBe(0);
    expect(await bobDaemon.exited).toBe(0);
  }, 120_000);
});

describe('privcomm daemon across a relay restart', () => {
  it('keeps a message sent while the relay is down, reconnects by itself and sends it', async () => {
    const database = await createTestDatabase();
    const port = String(await portToRestartOn());
    let relayProcess: RelayProcess = await spawnRelay(database.url, { PORT: port });
    const carol = tempDir('carol');
    const dave = tempDir('dave');
    try {
      const [, daveId] = await registerProfiles(relayProcess.url, carol, dave);
      // A session with Dave first, so that only the send itself needs the relay later.
      const first = await runCli(['--profile', carol, 'send', daveId, 'first']);
      expect(first.code, first.stderr).toBe(0);

      const daemon = startDaemon(carol);
      daemons.push(daemon.child);
      const rpc = new RpcPeer((text) => daemon.child.stdin!.write(text));
      daemon.child.stdout!.on('data', (chunk: Buffer) => rpc.feed(chunk));
      await rpc.until((m) => m.method === 'queue-empty', 'connected');

      await relayProcess.stop();
      await rpc.until((m) => m.method === 'disconnected', 'disconnected notification');
      const kept = await rpc.call('send', {
        recipient: daveId,
        message: 'while the relay is down',
      });
      expect(kept.error).toMatchObject({
        code: -32000,
        data: { code: 'RELAY_UNREACHABLE', kept: true, id: expect.any(String) },
      });
      expect(kept.error.message).toContain('do not send it again');

      const connectedBefore = rpc.received.filter((m) => m.method === 'connected').length;
      relayProcess = await spawnRelay(database.url, { PORT: port });
      await rpc.until(
        () => rpc.received.filter((m) => m.method === 'connected').length > connectedBefore,
        'reconnected by itself',
        40_000,
      );
      // The kept message went out on reconnection (once: the same id).
      await expect
        .poll(
          async () =>
            (await rpc.call('history', { recipient: daveId })).result.map(
              (m: any) => `${m.text}:${m.status}`,
            ),
          { timeout: 20_000 },
        )
        .toEqual(['first:sent', 'while the relay is down:sent']);
      daemon.child.stdin!.end();
      expect(await daemon.exited).toBe(0);
      const received = await runCli(['--profile', dave, '--json', 'receive']);
      expect(received.json.map((m: any) => [m.id, m.text])).toEqual([
        [expect.any(String), 'first'],
        [kept.error.data.id, 'while the relay is down'],
      ]);
    } finally {
      await relayProcess.stop();
      await database.drop();
    }
  }, 180_000);
});
