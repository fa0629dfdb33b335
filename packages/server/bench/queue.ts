/**
 * Throughput of the durable queue: offline store (many senders, 1 KiB envelopes to offline
 * devices) and drain (the devices connect and acknowledge everything). Starts the relay as
 * `npm start` does, on an embedded PostgreSQL in a temporary DATA_DIR, with the rate limits
 * lifted. Prints messages per second; asserts nothing (speed is measured, never a test).
 *
 *   npx tsx packages/server/bench/queue.ts [--pairs 100] [--messages 50] [--runs 3]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TestDevice, TestSocket } from '../test/support/client.ts';

const SERVER_ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '100' },
    messages: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
  },
});
const PAIRS = Number(values.pairs);
const MESSAGES = Number(values.messages);
const RUNS = Number(values.runs);

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });

const startRelay = async (): Promise<{
  url: string;
  wsUrl: string;
  child: ChildProcess;
  dir: string;
}> => {
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-queue-'));
  const port = await freePort();
  const lifted = '1000000/1';
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('src', 'main.ts')], {
    cwd: SERVER_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      DATA_DIR: dir,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      RATE_LIMIT_REGISTRATION: lifted,
      RATE_LIMIT_AUTH: lifted,
      RATE_LIMIT_MESSAGES: lifted,
      SEND_BYTES_PER_HOUR: String(2 ** 40),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i += 1) {
    const ok = await fetch(`${url}/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, wsUrl: `ws://127.0.0.1:${port}/v1/websocket`, child, dir };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('relay did not become ready');
};

const run = async (url: string, wsUrl: string): Promise<{ store: number; drain: number }> => {
  const senders = await Promise.all(Array.from({ length: PAIRS }, () => TestDevice.register(url)));
  const recipients = await Promise.all(
    Array.from({ length: PAIRS }, () => TestDevice.register(url)),
  );
  const content = Buffer.alloc(1024, 7);
  const storeStart = performance.now();
  await Promise.all(
    senders.map(async (sender, i) => {
      const recipient = recipients[i] as TestDevice;
      for (let m = 0; m < MESSAGES; m += 1) {
        const reply = await sender.send(recipient.accountId, [recipient.address()], content);
        if (reply.status !== 200) throw new Error(`send: ${reply.status}`);
      }
    }),
  );
  const storeSeconds = (performance.now() - storeStart) / 1000;
  const drainStart = performance.now();
  const sockets = await Promise.all(recipients.map((device) => TestSocket.connect(wsUrl, device)));
  await Promise.all(
    sockets.map((socket) =>
      socket.until(() => socket.requests.some((r) => r.verb === 'queue.empty'), 120_000, 'drain'),
    ),
  );
  const drainSeconds = (performance.now() - drainStart) / 1000;
  await Promise.all(sockets.map((socket) => socket.close()));
  const total = PAIRS * MESSAGES;
  return { store: total / storeSeconds, drain: total / drainSeconds };
};

const relay = await startRelay();
try {
  process.stdout.write(`${PAIRS} pairs x ${MESSAGES} messages of 1 KiB, ${RUNS} runs\n`);
  for (let i = 0; i < RUNS; i += 1) {
    const { store, drain } = await run(relay.url, relay.wsUrl);
    process.stdout.write(
      `run ${i + 1}: store ${store.toFixed(0)} msg/s, drain ${drain.toFixed(0)} msg/s\n`,
    );
  }
} finally {
  relay.child.kill('SIGTERM');
  await new Promise((resolve) => relay.child.once('exit', resolve));
  rmSync(relay.dir, { recursive: true, force: true });
}
