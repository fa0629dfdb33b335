import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { expect } from 'vitest';
import { dumpDatabase } from './database.ts';
import type { FaultCluster } from './fault-cluster.ts';
import { report } from './fault-schedule.ts';

/**
 * The privacy audit the fault suite runs after each of its runs, over everything the relays and
 * PostgreSQL wrote (killed processes included) and a dump of the database: no client address,
 * token, account id or plaintext marker; no sender or phone number anywhere in the schema;
 * activity kept at day granularity and envelope times at whole hours.
 */
export interface AuditInput {
  /** Account ids, tokens and the like that must appear nowhere in the logs. */
  readonly secrets: Iterable<string>;
  /** Prefixes or whole strings of the plaintext the test sent. */
  readonly markers: readonly string[];
  /** The E.164 phone numbers the test published for discovery: in no form in the dump. */
  readonly phoneNumbers?: readonly string[];
  /**
   * Account ids that sent the envelopes still queued at the audit: no envelope may carry one
   * (sealed sender), in any encoding. `queuedEnvelopes` is the least number of envelopes the
   * dump must hold, so that this check has something to judge.
   */
  readonly senders?: readonly string[];
  readonly queuedEnvelopes?: number;
}

const ADDRESS = /\b127\.0\.0\.\d{1,3}\b|::1\b|::ffff:/;
const JWT = /eyJ[A-Za-z0-9_-]{10,}/;

/** The columns the envelope table may have (SECURITY.md): no sender of any kind. */
const ENVELOPE_COLUMNS = [
  'account_id',
  'content',
  'device_id',
  'expires_at',
  'id',
  'seq',
  'stored_hour',
  'type',
  'urgent',
];

/**
 * Times finer than an hour that the database may hold: when short-lived credentials stop being
 * valid (a used login challenge, a link token, an invitation). Nothing else: activity is kept as
 * dates (accounts, devices) and envelopes as whole hours.
 */
const EXACT_TIMES_ALLOWED = new Set([
  'used_challenges.expires_at',
  'link_tokens.expires_at',
  'invite_codes.expires_at',
]);

interface Dump {
  readonly text: string;
  readonly tool: string;
  /** The data of each table (pg_dump's COPY blocks); empty for the rows fallback. */
  readonly tables: Map<string, { columns: string[]; rows: string[][] }>;
}

/** The COPY blocks of a plain pg_dump: table → column names and rows of text values. */
const copyBlocks = (text: string): Dump['tables'] => {
  const tables: Dump['tables'] = new Map();
  const block = /^COPY (?:\w+\.)?"?(\w+)"? \(([^)]*)\) FROM stdin;\n([\s\S]*?)^\\\.$/gm;
  for (const match of text.matchAll(block)) {
    const [, table = '', columns = '', data = ''] = match;
    tables.set(table, {
      columns: columns.split(', ').map((column) => column.replaceAll('"', '')),
      rows: data
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split('\t')),
    });
  }
  return tables;
};

/**
 * A dump of the whole database (schema and data) with a pg_dump of the server's version, as an
 * operator's backup would be. Without one (the embedded PostgreSQL 18 on a machine whose pg_dump
 * is older) every row of every table instead, which is what a dump's data holds, and it says so.
 */
const dumpOf = async (cluster: FaultCluster): Promise<Dump> => {
  const pgDump = cluster.postgres.server.pgDump;
  if (pgDump) {
    const dumped = spawnSync(pgDump, ['--no-owner', cluster.postgres.adminUrlOf('privcomm')], {
      encoding: 'utf8',
      maxBuffer: 1024 * 1024 * 1024,
    });
    if (dumped.status !== 0) throw new Error(`pg_dump failed: ${dumped.stderr}`);
    return { text: dumped.stdout, tool: 'pg_dump', tables: copyBlocks(dumped.stdout) };
  }
  report(
    `[faults] privacy audit: no pg_dump for ${cluster.postgres.server.name}; reading every row instead`,
  );
  return { text: await dumpDatabase(cluster.postgres.url), tool: 'rows', tables: new Map() };
};

/** Every way a phone number could sit in the dump: as text, as bytes, or plainly hashed. */
const phoneNumberForms = (e164: string): string[] => {
  const forms: string[] = [];
  for (const text of [e164, e164.replace(/^\+/, '')]) {
    forms.push(text, Buffer.from(text).toString('hex'));
    for (const algorithm of ['sha256', 'sha1', 'md5']) {
      const digest = createHash(algorithm).update(text).digest();
      const hex = digest.toString('hex');
      const base64 = digest.toString('base64');
      // As text (hex or base64), and as bytea (the digest's own hex, or its text's hex).
      forms.push(hex, base64, digest.toString('base64url'));
      forms.push(Buffer.from(hex).toString('hex'), Buffer.from(base64).toString('hex'));
    }
  }
  return forms;
};

/** Every way an account id could sit in an envelope's content (bytea: hex in the dump). */
const accountIdForms = (id: string): string[] => {
  const raw = Buffer.from(id.replaceAll('-', ''), 'hex');
  return [
    Buffer.from(id).toString('hex'),
    raw.toString('hex'),
    Buffer.from(raw.toString('base64')).toString('hex'),
    Buffer.from(Buffer.from(id).toString('base64')).toString('hex'),
  ];
};

export const auditPrivacy = async (cluster: FaultCluster, input: AuditInput): Promise<void> => {
  const secrets = [...input.secrets];
  // The servers' own addresses may be logged (PostgreSQL says where it listens, a relay which
  // database it cannot reach); a client's never. Clients here are on loopback too, so the
  // servers' endpoints are taken out before the search.
  const endpoints = new RegExp(
    `(127\\.0\\.0\\.1:|IPv4 address \\\\?"127\\.0\\.0\\.1\\\\?", port )(${cluster.serverPorts().join('|')})\\b`,
    'g',
  );
  const lines = cluster.logs().map((line) => line.replace(endpoints, 'SERVER-ENDPOINT'));
  const logs = lines.join('\n');
  /** The first line that matches, so that a failure shows what leaked and where. */
  const lineWith = (pattern: RegExp): string | null =>
    lines.find((line) => pattern.test(line))?.slice(0, 300) ?? null;
  expect(logs).toContain('relay listening');
  const inLogs = {
    addresses: lineWith(ADDRESS),
    tokens: lineWith(JWT),
    secrets: secrets
      .filter((secret) => logs.includes(secret))
      .map((secret) => lines.find((line) => line.includes(secret))?.slice(0, 400)),
    markers: input.markers.filter(
      (marker) => logs.includes(marker) || logs.includes(Buffer.from(marker).toString('base64')),
    ),
  };
  expect(inLogs).toEqual({ addresses: null, tokens: null, secrets: [], markers: [] });

  const dump = await dumpOf(cluster);
  const hex = (text: string): string => Buffer.from(text).toString('hex');
  const lowerDump = dump.text.toLowerCase();
  const inDump = {
    tokens: dump.text.match(JWT)?.[0] ?? null,
    addresses: dump.text.match(/\b127\.0\.0\.\d{1,3}\b/)?.[0] ?? null,
    markers: input.markers.filter(
      (marker) =>
        dump.text.includes(marker) ||
        dump.text.includes(hex(marker)) ||
        dump.text.includes(Buffer.from(marker).toString('base64')),
    ),
    phoneNumbers: (input.phoneNumbers ?? []).filter((number) =>
      phoneNumberForms(number).some(
        (form) => dump.text.includes(form) || lowerDump.includes(form.toLowerCase()),
      ),
    ),
  };
  expect(inDump).toEqual({ tokens: null, addresses: null, markers: [], phoneNumbers: [] });

  if (dump.tool === 'pg_dump') {
    // Activity at day granularity, envelope times at whole hours: read from the dump's values.
    const finerThanHours: string[] = [];
    for (const [table, { columns, rows }] of dump.tables) {
      columns.forEach((column, i) => {
        if (EXACT_TIMES_ALLOWED.has(`${table}.${column}`)) return;
        for (const row of rows) {
          const value = row[i] ?? '';
          const time = /^\d{4}-\d\d-\d\d \d\d:(\d\d):(\d\d(?:\.\d+)?)/.exec(value);
          if (time && (time[1] !== '00' || Number(time[2]) !== 0)) {
            finerThanHours.push(`${table}.${column}=${value}`);
          }
        }
      });
    }
    expect(finerThanHours.slice(0, 5)).toEqual([]);
    const devices = dump.tables.get('devices');
    const lastSeen = devices?.columns.indexOf('last_seen_on') ?? -1;
    expect(devices?.rows.length ?? 0).toBeGreaterThan(0);
    expect(lastSeen).toBeGreaterThanOrEqual(0);
    const notDays = (devices?.rows ?? [])
      .map((row) => row[lastSeen] ?? '')
      .filter((day) => !/^\d{4}-\d\d-\d\d$/.test(day));
    expect(notDays).toEqual([]);
    // Sealed sender: no queued envelope names who sent it, in any encoding.
    const envelopes = dump.tables.get('envelopes');
    const content = envelopes?.columns.indexOf('content') ?? -1;
    const contents = (envelopes?.rows ?? []).map((row) => (row[content] ?? '').toLowerCase());
    expect(contents.length).toBeGreaterThanOrEqual(input.queuedEnvelopes ?? 0);
    const senderForms = (input.senders ?? []).flatMap(accountIdForms);
    const naming = contents.filter((bytes) => senderForms.some((form) => bytes.includes(form)));
    expect(naming.length).toBe(0);
  }

  const client = new pg.Client({ connectionString: cluster.postgres.url });
  await client.connect();
  try {
    const columns = await client.query<{ table_name: string; column_name: string }>(
      `SELECT table_name, column_name FROM information_schema.columns
       WHERE table_schema = 'public' ORDER BY table_name, column_name`,
    );
    expect(
      columns.rows.filter((c) => c.table_name === 'envelopes').map((c) => c.column_name),
    ).toEqual(ENVELOPE_COLUMNS);
    expect(
      columns.rows.filter((c) =>
        /(^|_)(ip|phone|msisdn|e164|email|sender|source|address)(_|$)/.test(c.column_name),
      ),
    ).toEqual([]);
    // Activity as days: every date column of devices and accounts is a date, not a timestamp.
    const types = await client.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name IN ('devices', 'accounts')
         AND column_name ~ '_on$'`,
    );
    expect(types.rows.length).toBeGreaterThan(0);
    for (const row of types.rows)
      expect({ [row.column_name]: row.data_type }).toEqual({ [row.column_name]: 'date' });
    const hours = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM envelopes WHERE stored_hour <> date_trunc('hour', stored_hour)`,
    );
    expect(hours.rows[0]?.n).toBe(0);
  } finally {
    await client.end();
  }
  report(
    `[faults] privacy audit: ${cluster.logs().length} log lines, ${dump.text.length} bytes of ${dump.tool} dump (${cluster.postgres.server.name}; ${dump.tables.get('envelopes')?.rows.length ?? '?'} envelopes queued), ${secrets.length} ids, ${input.markers.length} markers, ${input.phoneNumbers?.length ?? 0} phone numbers: none found`,
  );
};
