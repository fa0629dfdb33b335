/**
 * Scenario 5 of `npm run bench` (packages/server/bench/run.ts starts it against the benchmark's
 * relay): the client side, a bot's throughput with the Node engine. Two full client cores
 * (PrivcommClient, libsignal through openNodeEngine on SQLite files, the client store in memory)
 * register on the relay; then, in this one process, measured by its own CPU time:
 * - a first contact: Alice's first text to Bob (bundle fetch, PQXDH, encrypt, send) in ms, and a
 *   following text for comparison;
 * - encrypt-and-send: Alice sends `messages` texts one after the other while Bob is offline;
 * - receive-and-decrypt: Bob connects and takes them all (decrypt, store, delivery receipts).
 * Only one client works at a time, so the process's CPU in each phase is that client's.
 * Prints one JSON line {"result": …}; asserts nothing.
 *
 *   node --import tsx bench/client-side.ts '{"url":"http://127.0.0.1:PORT","messages":300}'
 */
import { randomBytes, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  MemoryStore,
  PrivcommClient,
  type AccountId,
  type AuthSigner,
  type ClientEvent,
  type SocketLike,
} from '@privcomm/client';
import { openNodeEngine } from '../src/index.ts';

const { url, messages } = JSON.parse(process.argv[2] ?? '{}') as { url: string; messages: number };

const signer = (): AuthSigner => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // DER, not JWK: a JWK export of a generated key can deadlock Node 20 (the relay's
  // src/services/at-rest-share.ts says how).
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return {
    publicKey: async () => new Uint8Array(raw),
    sign: async (message) => new Uint8Array(sign(null, message, privateKey)),
  };
};

const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

interface Bot {
  client: PrivcommClient;
  events: ClientEvent[];
  id: AccountId;
}

const open = async (dir: string, name: string): Promise<Bot> => {
  const client = await PrivcommClient.open({
    transport: {
      relayUrl: url,
      fetch: (input, init) => fetch(input, init),
      openSocket: (socketUrl) => new WebSocket(socketUrl) as unknown as SocketLike,
    },
    engine: await openNodeEngine(path.join(dir, `${name}.sqlite`)),
    store: new MemoryStore(),
    signer: signer(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
  });
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  const profile = await client.register({ name });
  return { client, events, id: profile.accountId as AccountId };
};

const until = async (condition: () => boolean, ms: number): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('client-side bench: timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

const main = async (): Promise<void> => {
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-client-'));
  try {
    const alice = await open(dir, 'alice');
    const bob = await open(dir, 'bob');
    // Contacts both ways: Bob's side is then a conversation, not a message request.
    await alice.client.addContact('bob', bob.id);
    await bob.client.addContact('alice', alice.id);
    await alice.client.connect();

    // First contact: no session yet, so the send fetches Bob's bundle and runs PQXDH.
    let t = performance.now();
    await alice.client.sendText(bob.id, 'hello');
    const firstContactMs = performance.now() - t;
    t = performance.now();
    await alice.client.sendText(bob.id, 'again');
    const nextSendMs = performance.now() - t;

    const text = 'x'.repeat(160); // a chat-sized text
    let wall = performance.now();
    let cpu = cpuMs();
    for (let i = 0; i < messages; i += 1) await alice.client.sendText(bob.id, text);
    const sendCpuMs = cpuMs() - cpu;
    const sendWallMs = performance.now() - wall;
    await alice.client.disconnect();

    const received = (): number =>
      bob.events.filter((e) => e.type === 'message' && e.message.direction === 'in').length;
    const total = messages + 2;
    wall = performance.now();
    cpu = cpuMs();
    await bob.client.connect();
    await until(() => received() >= total, 300_000);
    const receiveCpuMs = cpuMs() - cpu;
    const receiveWallMs = performance.now() - wall;
    await bob.client.disconnect();
    await alice.client.close();
    await bob.client.close();
    process.stdout.write(
      `${JSON.stringify({
        result: {
          messages,
          firstContactMs,
          nextSendMs,
          sendPerCpuSecond: messages / (sendCpuMs / 1000),
          sendPerSecond: messages / (sendWallMs / 1000),
          sendCpuPerMessageUs: (sendCpuMs * 1000) / messages,
          receivePerCpuSecond: total / (receiveCpuMs / 1000),
          receivePerSecond: total / (receiveWallMs / 1000),
          receiveCpuPerMessageUs: (receiveCpuMs * 1000) / total,
        },
      })}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`client-side bench failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
