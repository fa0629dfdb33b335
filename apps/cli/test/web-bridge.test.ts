import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { BRIDGE_PROTOCOL, parseBridgeAddress } from '../src/daemon/web-bridge.ts';
import { expectOneErrorLine, removeTempDirs, runCli, RunningCli, tempDir } from './support/cli.ts';

/**
 * `privcomm daemon --web-bridge`, as the app's web build meets it: a real daemon process on
 * loopback. What must be refused is refused before any WebSocket exists: another listening
 * address, a connection without the secret or with a wrong one, a page from another origin,
 * a Host that is not loopback (DNS rebinding). With the secret, the page gets the profile's
 * engine, store and signer, and a second page replaces the first.
 */

const profileDir = path.join(tempDir('web-bridge'), 'profile');
let daemon: RunningCli;
let bridge: { url: string; secret: string };

beforeAll(async () => {
  daemon = RunningCli.start(['--json', '--profile', profileDir, 'daemon', '--web-bridge']);
  bridge = await daemon.untilJson((line) => line.type === 'web-bridge', 'the bridge address');
});

afterAll(async () => {
  expect(await daemon.stop('SIGTERM')).toBe(0);
  removeTempDirs();
});

type Outcome = { opened: WebSocket } | { status: number };

/** Connects as a page would; resolves with the open socket, or the HTTP status of the refusal. */
const connect = (
  options: { secret?: string; origin?: string; host?: string; protocols?: string[] } = {},
): Promise<Outcome> =>
  new Promise((resolve, reject) => {
    const protocols = options.protocols ?? [
      BRIDGE_PROTOCOL,
      ...(options.secret === undefined ? [] : [`secret.${options.secret}`]),
    ];
    const ws = new WebSocket(bridge.url, protocols, {
      origin: options.origin ?? 'http://127.0.0.1:8081',
      ...(options.host === undefined ? {} : { headers: { host: options.host } }),
    });
    ws.once('open', () => resolve({ opened: ws }));
    ws.once('unexpected-response', (_request, response) => {
      resolve({ status: response.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('error', (error) => {
      if (ws.readyState !== WebSocket.CLOSED) reject(error);
    });
  });

/** One JSON-RPC call over an open bridge socket. */
const call = (ws: WebSocket, method: string, params: Record<string, unknown> = {}) =>
  new Promise<any>((resolve) => {
    const id = Math.floor(performance.now() * 1000);
    const onMessage = (data: WebSocket.RawData) => {
      const answer = JSON.parse(data.toString());
      if (answer.id !== id) return;
      ws.off('message', onMessage);
      resolve(answer);
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
  });

describe('daemon --web-bridge', () => {
  it('listens on loopback only: any other address is refused before the profile is touched', async () => {
    for (const address of ['0.0.0.0:0', '192.168.1.20:8790', '[::]:0', 'example.org:80']) {
      expect(() => parseBridgeAddress(address)).toThrow(/loopback/);
    }
    expect(() => parseBridgeAddress('127.0.0.1:99999')).toThrow('HOST:PORT');
    expect(parseBridgeAddress('8790')).toEqual({ host: '127.0.0.1', port: 8790 });
    expect(parseBridgeAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });

    const elsewhere = path.join(tempDir('web-bridge-refused'), 'profile');
    const result = await runCli(['--profile', elsewhere, 'daemon', '--web-bridge', '0.0.0.0:0']);
    expect(result.code).toBe(2);
    expect(expectOneErrorLine(result)).toContain('loopback only');
    expect(existsSync(elsewhere)).toBe(false);
    expect(bridge.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/$/);
    expect(bridge.secret).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a connection without the secret, with a wrong one, or without the protocol', async () => {
    expect(await connect()).toEqual({ status: 401 });
    expect(await connect({ secret: 'f'.repeat(64) })).toEqual({ status: 401 });
    expect(await connect({ secret: bridge.secret.slice(0, 10) })).toEqual({ status: 401 });
    expect(await connect({ protocols: [`secret.${bridge.secret}`] })).toEqual({ status: 426 });
  });

  it('refuses pages from another origin and Hosts that are not loopback, even with the secret', async () => {
    const secret = bridge.secret;
    expect(await connect({ secret, origin: 'https://evil.example' })).toEqual({ status: 403 });
    expect(await connect({ secret, origin: 'null' })).toEqual({ status: 403 });
    expect(await connect({ secret, origin: 'file://' })).toEqual({ status: 403 });
    expect(await connect({ secret, host: 'evil.example:80' })).toEqual({ status: 421 });
    const plain = await fetch(bridge.url.replace('ws:', 'http:'));
    expect(plain.status).toBe(426);
  });

  it("with the secret, serves the profile's engine, store and signer to one page at a time", async () => {
    const first = await connect({ secret: bridge.secret, origin: 'http://localhost:8081' });
    if (!('opened' in first)) return expect.fail(`refused: ${first.status}`);
    const ws = first.opened;
    expect(ws.protocol).toBe(BRIDGE_PROTOCOL);

    expect((await call(ws, 'store', { method: 'profile', args: [] })).result).toBeNull();
    const key = (await call(ws, 'signer.publicKey')).result;
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    const handle = (await call(ws, 'engine', { op: 'open', args: { file: 'profile' } })).result;
    const identity = (await call(ws, 'engine', { op: 'createIdentity', engine: handle })).result;
    expect(Buffer.from(identity.identityKey, 'base64')).toHaveLength(33);
    // The page names no file: the bridge has one engine, the profile's.
    const other = await call(ws, 'engine', { op: 'open', args: { file: '/etc/passwd' } });
    expect(other.error).toMatchObject({ data: { code: 'ENGINE', failure: { kind: 'argument' } } });
    // Closing the page's engine leaves the profile's open for the next page.
    await call(ws, 'engine', { op: 'close', engine: handle });
    const bad = await call(ws, 'store', {
      method: 'saveContact',
      args: [{ accountId: 'x', name: 'x', expireSeconds: 0 }],
    });
    expect(bad.error.code).toBe(-32602);
    const notRelay = await call(ws, 'relay.fetch', { url: 'file:///etc/passwd', method: 'GET' });
    expect(notRelay.error.code).toBe(-32602);

    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const second = await connect({ secret: bridge.secret });
    if (!('opened' in second)) return expect.fail(`refused: ${second.status}`);
    expect(await closed).toBe(4000);
    const again = (await call(second.opened, 'engine', { op: 'open', args: { file: 'profile' } }))
      .result;
    const local = await call(second.opened, 'engine', { op: 'localIdentity', engine: again });
    expect(local.result.identityKey).toBe(identity.identityKey);
    second.opened.close();
  });
});
