/**
 * `npm run bench:groups`: what one group message costs the sender, with sender keys (the Node
 * engine's groupEncrypt and one PUT /v1/messages/multi) against the same message sent as one
 * one-to-one send per member device (encrypt + PUT /v1/messages/:accountId each), for groups of
 * 10, 100 and 1,000 member devices (docs/benchmarks.md, "Groups"). A measurement, not a test:
 * nothing in it passes or fails.
 *
 * Real parts throughout: a relay (the test harness's, in this process) on the system PostgreSQL,
 * in a database created here and dropped at the end; the sender is a PrivcommClient with the Node
 * engine (libsignal, SQLite in a file) and sends through the client core's RelayApi. Every member
 * device is a Node engine of its own, registered on the relay with its real keys; the sender
 * starts a session from its bundle and the member answers once, so that every session is a
 * complete one (no prekey message), as in a conversation that has begun. Those engines are closed
 * once their session is made: only the sender's side is measured. The sessions are made once for
 * the largest group and reused for the smaller ones (its first members).
 *
 *   npm run bench:groups [-- --quick] [-- --repeat 3] [-- --json results.json]
 *                        [-- --admin-url postgres://postgres@127.0.0.1:5432/postgres]
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import WebSocket from 'ws';
import {
  encodeContent,
  MemoryStore,
  PrivcommClient,
  RelayApi,
  type Address,
  type SignalEngine,
  type SocketLike,
  type Transport,
} from '@privcomm/client';
import { startRelay, TestDevice, http, type TestRelay } from '@privcomm/server/testing';
import { memorySigner } from '../test/support/memory-signer.ts';
import { openNodeEngine, splitMultiRecipientMessage } from '../src/index.ts';

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '3' },
    json: { type: 'string' },
    'admin-url': {
      type: 'string',
      default:
        process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    },
  },
});
const SIZES = options.quick === true ? [10, 100] : [10, 100, 1000];
const REPEAT = Math.max(1, Number.parseInt(options.repeat ?? '3', 10) || 3);
/** Member sessions made at once: the sender's engine serialises its own work anyway. */
const SETUP_CONCURRENCY = 4;
const TEXT =
  'Dinner on Sunday at 7? Bring the photos from the lake, and tell me if you need a lift.';

const log = (line: string): void => {
  process.stderr.write(`[bench:groups ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
};
const load1 = (): number => Number(os.loadavg()[0]!.toFixed(2));
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

/** What went over the wire to the relay: requests and request-body bytes (UTF-8 JSON). */
class WireCounter {
  requests = 0;
  bodyBytes = 0;
  reset(): void {
    this.requests = 0;
    this.bodyBytes = 0;
  }
}

const countingTransport = (relayUrl: string, counter: WireCounter): Transport => ({
  relayUrl,
  fetch: (url, init) => {
    counter.requests += 1;
    // The client core sends JSON text bodies (httpRequest).
    if (init?.body !== undefined) counter.bodyBytes += Buffer.byteLength(init.body);
    return fetch(url, init);
  },
  openSocket: (url) => new WebSocket(url) as unknown as SocketLike,
});

/** A database of its own on the given cluster, dropped by the returned function. */
const createDatabase = async (
  adminUrl: string,
): Promise<{ url: string; drop: () => Promise<void> }> => {
  const name = `bench_groups_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
};

interface Sender {
  readonly client: PrivcommClient;
  readonly engine: SignalEngine;
  readonly address: Address;
  readonly api: RelayApi;
  readonly counter: WireCounter;
}

const openSender = async (relay: TestRelay, directory: string): Promise<Sender> => {
  const counter = new WireCounter();
  const engine = await openNodeEngine(path.join(directory, 'sender.db'));
  const signer = memorySigner();
  const client = await PrivcommClient.open({
    transport: countingTransport(relay.url, counter),
    engine,
    store: new MemoryStore(),
    signer,
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
  });
  const profile = await client.register({ name: 'bench sender' });
  const address = { accountId: profile.accountId, deviceId: profile.deviceId };
  const api = new RelayApi(countingTransport(relay.url, counter), signer, Date.now, address);
  await api.currentToken(); // authenticated before anything is counted
  return { client, engine, address, api, counter };
};

/**
 * One member device: a Node engine of its own, registered on the relay with its real identity
 * and prekeys; the sender starts a session from its bundle, the member opens that first message
 * and answers, the sender opens the answer. The member's engine is closed afterwards unless kept.
 */
const addMember = async (
  relay: TestRelay,
  sender: Sender,
  index: number,
  keep: boolean,
): Promise<{ address: Address; registrationId: number; engine?: SignalEngine }> => {
  const engine = await openNodeEngine(':memory:');
  const identity = await engine.createIdentity();
  const signedPreKey = await engine.generateSignedPreKey();
  const kyberPreKey = await engine.generateKyberLastResortPreKey();
  const wireKey = (key: typeof signedPreKey) => ({
    keyId: key.keyId,
    publicKey: b64(key.publicKey),
    signature: b64(key.signature),
  });
  const device = new TestDevice(relay.url);
  const created = await http(relay.url, 'POST', '/v1/accounts', {
    ...device.newDeviceFields(),
    identityKey: b64(identity.identityKey),
    registrationId: identity.registrationId,
    signedPreKey: wireKey(signedPreKey),
    kyberLastResortPreKey: wireKey(kyberPreKey),
  });
  if (created.status !== 200) {
    throw new Error(`member ${index}: register ${created.status} ${JSON.stringify(created.body)}`);
  }
  const address = { accountId: created.body.accountId, deviceId: created.body.deviceId } as Address;
  await engine.setLocalAddress(address);
  await sender.engine.processBundle(address, {
    identityKey: identity.identityKey,
    deviceId: address.deviceId,
    registrationId: identity.registrationId,
    signedPreKey,
    kyberPreKey,
  });
  const hello = await sender.engine.encrypt(address, new TextEncoder().encode('hello'));
  await engine.decrypt(`hello-${index}`, hello);
  const answer = await engine.encrypt(sender.address, new TextEncoder().encode('hi'));
  await sender.engine.decrypt(`answer-${index}`, answer);
  if (keep) return { address, registrationId: identity.registrationId, engine };
  await engine.close();
  return { address, registrationId: identity.registrationId };
};

interface Figures {
  encryptMs: number;
  uploadMs: number;
  totalMs: number;
  requests: number;
  /** Request bodies as sent (JSON, ciphertext in base64). */
  bodyBytes: number;
  /** The ciphertext bytes themselves, before base64. */
  ciphertextBytes: number;
}

interface Row {
  size: number;
  load1: number;
  group: Figures;
  oneToOne: Figures;
  ratios: {
    totalMs: number;
    encryptMs: number;
    uploadMs: number;
    bodyBytes: number;
    requests: number;
  };
}

const medianFigures = (runs: Figures[]): Figures => ({
  encryptMs: round(median(runs.map((r) => r.encryptMs))),
  uploadMs: round(median(runs.map((r) => r.uploadMs))),
  totalMs: round(median(runs.map((r) => r.totalMs))),
  requests: median(runs.map((r) => r.requests)),
  bodyBytes: median(runs.map((r) => r.bodyBytes)),
  ciphertextBytes: median(runs.map((r) => r.ciphertextBytes)),
});

const sendToGroup = async (
  sender: Sender,
  distributionId: string,
  members: readonly Address[],
): Promise<Figures> => {
  const groupId = randomBytes(16).toString('hex');
  const id = randomUUID();
  const sentAt = Date.now();
  const plaintext = encodeContent({
    kind: 'group',
    id,
    sentAt,
    groupId,
    content: { kind: 'text', id, sentAt, text: TEXT },
  });
  sender.counter.reset();
  const start = performance.now();
  const message = await sender.engine.groupEncrypt(distributionId, members, plaintext);
  const encrypted = performance.now();
  const result = await sender.api.sendMultiRecipient(message);
  const uploaded = performance.now();
  if (result.kind !== 'stored' || result.stored !== members.length) {
    throw new Error(`group upload to ${members.length}: ${JSON.stringify(result)}`);
  }
  return {
    encryptMs: encrypted - start,
    uploadMs: uploaded - encrypted,
    totalMs: uploaded - start,
    requests: sender.counter.requests,
    bodyBytes: sender.counter.bodyBytes,
    ciphertextBytes: message.content.byteLength,
  };
};

/** As the client core's Sender does it, one device after the other (one device per account). */
const sendOneToOne = async (sender: Sender, members: readonly Address[]): Promise<Figures> => {
  const id = randomUUID();
  const plaintext = encodeContent({ kind: 'text', id, sentAt: Date.now(), text: TEXT });
  sender.counter.reset();
  let encryptMs = 0;
  let uploadMs = 0;
  let ciphertextBytes = 0;
  for (const member of members) {
    const start = performance.now();
    const encrypted = await sender.engine.encrypt(member, plaintext);
    const mid = performance.now();
    const response = await sender.api.sendMessages(member.accountId, {
      messages: [
        {
          deviceId: member.deviceId,
          registrationId: encrypted.registrationId,
          type: encrypted.type,
          content: b64(encrypted.content),
        },
      ],
    });
    const end = performance.now();
    if (response.status !== 200) {
      throw new Error(`one-to-one send: ${response.status} ${JSON.stringify(response.body)}`);
    }
    encryptMs += mid - start;
    uploadMs += end - mid;
    ciphertextBytes += encrypted.content.byteLength;
  }
  return {
    encryptMs,
    uploadMs,
    totalMs: encryptMs + uploadMs,
    requests: sender.counter.requests,
    bodyBytes: sender.counter.bodyBytes,
    ciphertextBytes,
  };
};

/** A kept member opens its share of a group message: the benchmark sends real ones. */
const checkShare = async (
  sender: Sender,
  member: { address: Address; engine: SignalEngine },
  distributionId: string,
): Promise<void> => {
  await member.engine.processSenderKeyDistribution(
    sender.address,
    await sender.engine.senderKeyDistribution(distributionId),
  );
  const message = await sender.engine.groupEncrypt(
    distributionId,
    [member.address],
    encodeContent({ kind: 'text', id: 'check', sentAt: Date.now(), text: TEXT }),
  );
  const [share] = splitMultiRecipientMessage(message);
  const opened = await member.engine.decrypt('check', share!.ciphertext);
  if (opened.distributionId !== distributionId) throw new Error('the check share did not open');
};

const pad = (value: string | number, width: number): string => String(value).padStart(width);
const fmt = (value: number): string => value.toLocaleString('en-US');

const printTable = (rows: Row[]): void => {
  const header = [
    '| devices | how                  | encrypt ms | upload ms | total ms | requests | bytes sent | ciphertext | load |',
    '| ------: | -------------------- | ---------: | --------: | -------: | -------: | ---------: | ---------: | ---: |',
  ];
  const lines = rows.flatMap((row) =>
    (
      [
        ['sender key, 1 upload', row.group],
        ['one-to-one × N', row.oneToOne],
      ] as const
    ).map(
      ([how, f]) =>
        `| ${pad(fmt(row.size), 7)} | ${how.padEnd(20)} | ${pad(fmt(f.encryptMs), 10)} | ${pad(fmt(f.uploadMs), 9)} | ${pad(fmt(f.totalMs), 8)} | ${pad(fmt(f.requests), 8)} | ${pad(fmt(f.bodyBytes), 10)} | ${pad(fmt(f.ciphertextBytes), 10)} | ${pad(row.load1, 4)} |`,
    ),
  );
  const ratioLines = [
    '',
    '| devices | group ÷ one-to-one: total time | encrypt | upload | bytes sent | requests |',
    '| ------: | -----------------------------: | ------: | -----: | ---------: | -------: |',
    ...rows.map(
      (row) =>
        `| ${pad(fmt(row.size), 7)} | ${pad(row.ratios.totalMs, 30)} | ${pad(row.ratios.encryptMs, 7)} | ${pad(row.ratios.uploadMs, 6)} | ${pad(row.ratios.bodyBytes, 10)} | ${pad(row.ratios.requests, 8)} |`,
    ),
  ];
  process.stdout.write([...header, ...lines, ...ratioLines].join('\n') + '\n\n');
};

const main = async (): Promise<void> => {
  const started = new Date();
  const loadAtStart = os.loadavg().map((v) => round(v, 2));
  log(
    `sizes ${SIZES.join(', ')}, ${REPEAT} run(s) each; load average ${loadAtStart.join(' ')} on ${os.cpus().length} cores (a shared machine: figures move with the neighbours' load)`,
  );
  const directory = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-groups-'));
  const database = await createDatabase(options['admin-url']!);
  let relay: TestRelay | undefined;
  let sender: Sender | undefined;
  const keptEngines: SignalEngine[] = [];
  const cleanUp = async (): Promise<void> => {
    await sender?.client.close().catch(() => undefined);
    for (const engine of keptEngines) await engine.close().catch(() => undefined);
    await relay?.close().catch(() => undefined);
    await database
      .drop()
      .catch((error: unknown) => log(`could not drop the database: ${String(error)}`));
    rmSync(directory, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void cleanUp().finally(() => process.exit(130));
  });
  try {
    relay = await startRelay(database.url, {
      LOG_LEVEL: 'warn',
      RATE_LIMIT_REGISTRATION: '100000/1',
      RATE_LIMIT_MESSAGES: '100000/1',
    });
    const pgVersion = await (async () => {
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        return (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!
          .server_version;
      } finally {
        await client.end();
      }
    })();
    sender = await openSender(relay, directory);

    const largest = SIZES[SIZES.length - 1]!;
    log(`making ${largest} member devices with complete sessions (once, for every size)`);
    const setupStart = performance.now();
    const members: Address[] = new Array(largest);
    let kept: { address: Address; engine: SignalEngine } | undefined;
    let next = 0;
    await Promise.all(
      Array.from({ length: SETUP_CONCURRENCY }, async () => {
        while (next < largest) {
          const index = next++;
          const member = await addMember(relay!, sender!, index, index === 0);
          members[index] = member.address;
          if (member.engine) {
            kept = { address: member.address, engine: member.engine };
            keptEngines.push(member.engine);
          }
          if ((index + 1) % 100 === 0) log(`  ${index + 1} of ${largest}`);
        }
      }),
    );
    const setupSeconds = round((performance.now() - setupStart) / 1000);
    log(`sessions made in ${setupSeconds} s`);

    const distributionId = randomUUID();
    await checkShare(sender, kept!, distributionId);
    // Warm-up (JIT, connection pools), not counted.
    await sendToGroup(sender, distributionId, members.slice(0, 2));
    await sendOneToOne(sender, members.slice(0, 2));

    const rows: Row[] = [];
    for (const size of SIZES) {
      const group = members.slice(0, size);
      const groupRuns: Figures[] = [];
      const oneRuns: Figures[] = [];
      const load = load1();
      for (let run = 0; run < REPEAT; run++) {
        groupRuns.push(await sendToGroup(sender, distributionId, group));
        oneRuns.push(await sendOneToOne(sender, group));
      }
      const g = medianFigures(groupRuns);
      const o = medianFigures(oneRuns);
      const ratio = (a: number, b: number) => round(a / b, 4);
      const row: Row = {
        size,
        load1: round((load + load1()) / 2, 2),
        group: g,
        oneToOne: o,
        ratios: {
          totalMs: ratio(g.totalMs, o.totalMs),
          encryptMs: ratio(g.encryptMs, o.encryptMs),
          uploadMs: ratio(g.uploadMs, o.uploadMs),
          bodyBytes: ratio(g.bodyBytes, o.bodyBytes),
          requests: ratio(g.requests, o.requests),
        },
      };
      rows.push(row);
      log(
        `${size}: group ${g.totalMs} ms / ${fmt(g.bodyBytes)} B, one-to-one ${o.totalMs} ms / ${fmt(o.bodyBytes)} B`,
      );
    }

    printTable(rows);
    const document = {
      benchmark: 'groups',
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      quick: options.quick === true,
      runsPerFigure: REPEAT,
      figure: 'median of the runs',
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memoryGiB: round(os.totalmem() / 2 ** 30),
        node: process.version,
        postgres: pgVersion,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: os.loadavg().map((v) => round(v, 2)),
        note: 'a shared machine, loaded by other work: times move with its load; bytes and requests do not',
      },
      setup: { memberDevices: largest, seconds: setupSeconds },
      message: {
        text: TEXT,
        plaintextBytes: encodeContent({ kind: 'text', id: randomUUID(), sentAt: 0, text: TEXT })
          .byteLength,
      },
      rows,
    };
    const json = JSON.stringify(document, null, 2);
    process.stdout.write(`${json}\n`);
    if (options.json !== undefined) writeFileSync(options.json, `${json}\n`);
  } finally {
    await cleanUp();
  }
};

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
