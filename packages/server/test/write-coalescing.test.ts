import type { AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { createMetrics } from '../src/metrics.ts';
import { FrameChannel } from '../src/ws/frame-channel.ts';
import { coalesceWrites, transportOf } from '../src/ws/write-coalescing.ts';

/** A real `ws` server and client on loopback; the server's end of the connection. */
const connect = async (): Promise<{
  server: WebSocketServer;
  serverSide: WebSocket;
  client: WebSocket;
}> => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const accepted = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await new Promise((resolve, reject) => {
    client.once('open', resolve);
    client.once('error', reject);
  });
  return { server, serverSide: await accepted, client };
};

/** Counts the write calls that reach the TCP socket (each is one system call, or more). */
const countWrites = (socket: WebSocket): { readonly count: number } => {
  const transport = transportOf(socket) as unknown as Record<string, (...args: unknown[]) => void>;
  const counter = { count: 0 };
  for (const name of ['_write', '_writev']) {
    const original = transport[name] as (...args: unknown[]) => void;
    transport[name] = function (this: unknown, ...args: unknown[]) {
      counter.count += 1;
      return original.apply(this, args);
    };
  }
  return counter;
};

const received = (client: WebSocket, count: number): Promise<string[]> =>
  new Promise((resolve) => {
    const frames: string[] = [];
    client.on('message', (data: Buffer) => {
      frames.push(data.toString());
      if (frames.length === count) resolve(frames);
    });
  });

describe('write coalescing', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  const open = async () => {
    const connection = await connect();
    close = async () => {
      connection.client.terminate();
      await new Promise((resolve) => connection.server.close(resolve));
    };
    return connection;
  };

  it('reaches the TCP socket under ws (so the relay coalesces at all)', async () => {
    const { serverSide } = await open();
    expect(transportOf(serverSide)).toBeDefined();
  });

  it("writes one turn's frames to a socket in one write, in order", async () => {
    const { serverSide, client } = await open();
    const writes = countWrites(serverSide);
    const arriving = received(client, 10);
    for (let n = 0; n < 10; n += 1) {
      coalesceWrites(serverSide);
      serverSide.send(`frame ${n}`);
    }
    expect(writes.count).toBe(0); // held until this turn is done
    expect(await arriving).toEqual(Array.from({ length: 10 }, (_, n) => `frame ${n}`));
    expect(writes.count).toBe(1);
  });

  it('corks a socket once per turn however often it is asked, and several sockets together', async () => {
    const one = await connect();
    const two = await connect();
    close = async () => {
      for (const { client, server } of [one, two]) {
        client.terminate();
        await new Promise((resolve) => server.close(resolve));
      }
    };
    const arriving = [received(one.client, 3), received(two.client, 3)];
    for (let n = 0; n < 3; n += 1) {
      for (const { serverSide } of [one, two]) {
        coalesceWrites(serverSide);
        serverSide.send(`frame ${n}`);
        expect(transportOf(serverSide)?.writableCorked).toBe(1);
      }
    }
    const frames = ['frame 0', 'frame 1', 'frame 2'];
    expect(await Promise.all(arriving)).toEqual([frames, frames]);
    expect(transportOf(one.serverSide)?.writableCorked).toBe(0);
    expect(transportOf(two.serverSide)?.writableCorked).toBe(0);
  });

  it('writes the frames of several callbacks of one turn together', async () => {
    const { serverSide, client } = await open();
    const writes = countWrites(serverSide);
    const arriving = received(client, 2);
    // Two immediates queued together run in one turn, with the promise jobs of each run in
    // between (a flush after each callback would write twice). Not two timers: each reads the
    // clock when it is set, so on a busy machine they can fall due in different turns.
    for (const text of ['one', 'two']) {
      setImmediate(() => {
        coalesceWrites(serverSide);
        serverSide.send(text);
      });
    }
    expect(await arriving).toEqual(['one', 'two']);
    expect(writes.count).toBe(1);
  });

  it('writes frame by frame without it (what the test above would otherwise see)', async () => {
    const { serverSide, client } = await open();
    const writes = countWrites(serverSide);
    const arriving = received(client, 10);
    for (let n = 0; n < 10; n += 1) serverSide.send(`frame ${n}`);
    await arriving;
    expect(writes.count).toBe(10);
  });

  it('flushes again in the next turn, and what was held goes out before a close frame', async () => {
    const { serverSide, client } = await open();
    const arriving = received(client, 2);
    coalesceWrites(serverSide);
    serverSide.send('first');
    await nextTurn();
    expect(transportOf(serverSide)?.writableCorked).toBe(0);
    coalesceWrites(serverSide);
    serverSide.send('second');
    const closed = new Promise<number>((resolve) => client.once('close', resolve));
    serverSide.close(1000, 'bye');
    expect(await arriving).toEqual(['first', 'second']);
    expect(await closed).toBe(1000);
  });

  it("is what the relay's frame channel writes through", async () => {
    const { serverSide, client } = await open();
    const channel = new FrameChannel(serverSide, createMetrics(), {
      onFrame: () => {},
      close: () => {},
      isClosed: false,
    });
    const writes = countWrites(serverSide);
    const arriving = received(client, 3);
    for (let id = 1; id <= 3; id += 1) channel.respond(id, 200);
    expect((await arriving).map((frame) => JSON.parse(frame).id)).toEqual([1, 2, 3]);
    expect(writes.count).toBe(1);
  });
});
