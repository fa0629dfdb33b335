import { spawnSync } from 'node:child_process';
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
  /** Account ids, tokens and the like that must appear nowhere. */
  readonly secrets: Iterable<string>;
  /** Prefixes or whole strings of the plaintext the test sent. */
  readonly markers: readonly string[];
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

/** A logical dump: pg_dump when this machine has one for the server's major version. */
const logicalDump = async (url: string): Promise<{ text: string; tool: string }> => {
  const dumped = spawnSync('pg_dump', ['--data-only', '--inserts', url], { encoding: 'utf8' });
  if (dumped.status === 0) return { text: dumped.stdout, tool: 'pg_dump' };
  // pg_dump refuses servers newer than itself (the embedded server is PostgreSQL 18, Debian 12
  // ships pg_dump 15): every row of every table instead, which is what a dump's data holds.
  report(
    `[faults] privacy audit: pg_dump unusable here (${(dumped.stderr || String(dumped.error)).split('\n')[0]}); reading every row instead`,
  );
  return { text: await dumpDatabase(url), tool: 'rows' };
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

  const dump = await logicalDump(cluster.postgres.url);
  const hex = (text: string): string => Buffer.from(text).toString('hex');
  const inDump = {
    tokens: dump.text.match(JWT)?.[0] ?? null,
    addresses: dump.text.match(/\b127\.0\.0\.\d{1,3}\b/)?.[0] ?? null,
    markers: input.markers.filter(
      (marker) =>
        dump.text.includes(marker) ||
        dump.text.includes(hex(marker)) ||
        dump.text.includes(Buffer.from(marker).toString('base64')),
    ),
  };
  expect(inDump).toEqual({ tokens: null, addresses: null, markers: [] });

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
    `[faults] privacy audit: ${cluster.logs().length} log lines, ${dump.text.length} bytes of ${dump.tool} dump, ${secrets.length} ids and ${input.markers.length} markers: none found`,
  );
};
