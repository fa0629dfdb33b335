import type pg from 'pg';
import { arrayLiteral } from '../db/array-literal.ts';
import { RelayError } from '../errors.ts';
import { EVENTS_CHANNEL } from '../db/events.ts';
import { isDatabaseUnavailable } from '../db/executor.ts';
import { storedHourText } from '../stored-hour.ts';

/** What one device may have queued (QUEUE_MAX_ENVELOPES, QUEUE_MAX_BYTES). */
export interface QueueCaps {
  readonly maxEnvelopes: number;
  readonly maxBytes: number;
}

/**
 * A full queue empties only when its device comes online, which the relay cannot predict: the
 * sender keeps the message and tries again after this long (docs/protocol.md).
 */
export const QUEUE_FULL_RETRY_AFTER_SECONDS = 600;

/** A device of the recipient account, as the send path checks it. */
export interface DeviceQueue {
  readonly registrationId: number;
  readonly envelopes: number;
  readonly bytes: number;
  /** The last queue position given out (devices.queue_seq): committed rows go up to it. */
  readonly lastSeq: number;
}

export const queueFull = (): RelayError =>
  new RelayError('QUEUE_FULL', undefined, { retryAfterSeconds: QUEUE_FULL_RETRY_AFTER_SECONDS });

/** One send's device-set lookup: the recipient account, and the sender that must still exist. */
export interface DeviceSetRequest {
  readonly recipient: string;
  readonly sender: { readonly accountId: string; readonly deviceId: number };
}

/** The recipient's devices with what each has queued, and whether the sender still exists. */
export interface DeviceSet {
  devices: Map<number, DeviceQueue>;
  senderExists: boolean;
}

/** One ciphertext for one device, as the send path hands it to storage. */
export interface NewEnvelope {
  /**
   * Chosen by the relay before anything is written: an envelope delivered first (before its
   * insert) and stored because its acknowledgement came late keeps the id the device already saw,
   * so that the device drops the redelivered copy.
   */
  id: string;
  accountId: string;
  deviceId: number;
  type: number;
  content: Buffer;
  /**
   * `content` as the sender spelled it, when at hand: canonical base64 (canonical-base64.ts), so
   * exactly what encoding `content` again would give; a socket delivering first sends it as is.
   */
  base64?: string;
  urgent: boolean;
}

/**
 * A read of a device's queue: the next envelopes after position `afterSeq`, at most `limit` of
 * them, and no more after their contents reach `maxBytes` (the first one always comes).
 */
export interface QueueRead {
  readonly accountId: string;
  readonly deviceId: number;
  readonly afterSeq: number;
  readonly limit: number;
  readonly maxBytes: number;
}

export interface StoredEnvelope {
  seq: number;
  id: string;
  type: number;
  content: Buffer;
  urgent: boolean;
  /** ISO 8601 (stored-hour.ts). */
  storedHour: string;
}

/**
 * What one insert queued for one device: positions firstSeq to lastSeq, given to that device's
 * rows in input order.
 */
export interface QueuedBatch {
  accountId: string;
  deviceId: number;
  firstSeq: number;
  lastSeq: number;
  /** ISO 8601 (stored-hour.ts). */
  storedHour: string;
}

/**
 * The envelopes an insert committed, per device address (`account.device`), in queue order, as
 * a socket delivers them: the rows of each device were numbered in input order.
 */
export const committedEnvelopes = (
  rows: readonly NewEnvelope[],
  queued: readonly QueuedBatch[],
): Map<string, StoredEnvelope[]> => {
  const byDevice = new Map<string, StoredEnvelope[]>();
  const batches = new Map(queued.map((batch) => [`${batch.accountId}.${batch.deviceId}`, batch]));
  for (const row of rows) {
    const address = `${row.accountId}.${row.deviceId}`;
    const batch = batches.get(address);
    if (!batch) continue;
    const list = byDevice.get(address) ?? [];
    const seq = batch.firstSeq + list.length;
    if (seq > batch.lastSeq) continue;
    list.push({
      seq,
      id: row.id,
      type: row.type,
      content: row.content,
      urgent: row.urgent,
      storedHour: batch.storedHour,
    });
    byDevice.set(address, list);
  }
  return byDevice;
};

/** An acknowledged envelope, by its key: its device and its position in that device's queue. */
export interface QueuedEnvelopeKey {
  accountId: string;
  deviceId: number;
  seq: number;
}

/**
 * The contents of a batch as one bytea and where each begins, 0-based: node-postgres sends a
 * Buffer parameter as binary, but a bytea[] as text, each element hex-encoded and escaped (6 % of
 * the relay's time in the store scenario, and PostgreSQL's to decode it).
 */
const joinedContents = (rows: readonly NewEnvelope[]): { joined: Buffer; offsets: number[] } => {
  const offsets: number[] = [];
  let length = 0;
  for (const row of rows) {
    offsets.push(length);
    length += row.content.length;
  }
  return {
    joined: Buffer.concat(
      rows.map((row) => row.content),
      length,
    ),
    offsets,
  };
};

/**
 * The durable queue. Written with plain SQL because it is the hot path, and the hot statements are
 * named, so each connection parses and plans them once (measured: the ORM's query building and
 * re-parsing cost more than the queries). One statement inserts a
 * whole batch from arrays and, in the same transaction, queues one wake-up notification per
 * distinct device, which PostgreSQL delivers only once the rows are committed; it returns what it
 * queued per device, so that this instance can hand committed envelopes to its own sockets
 * without reading them back. Triggers count
 * each device's queue into queue_usage; the insert checks the caps there before it commits.
 *
 * Positions come from each device's own counter (devices.queue_seq), advanced in the same
 * statement: rows of different devices carry unrelated numbers. The devices' rows are locked in
 * one order (sorted), before the triggers lock queue_usage in the same order, so that two
 * instances inserting for the same devices cannot deadlock.
 */
export const createEnvelopesRepository = (pool: pg.Pool, ttlDays: number, caps: QueueCaps) => ({
  /**
   * Stores the rows, or none of them (QUEUE_FULL) if that would take a device's queue over a
   * cap. The trigger's update keeps each counted row locked until commit, so concurrent inserts
   * on any instance wait and then see each other's counts: the caps hold exactly.
   */
  async insert(rows: readonly NewEnvelope[]): Promise<QueuedBatch[]> {
    const client = await pool.connect();
    // A connection whose rollback failed is broken: it is destroyed rather than reused.
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const contents = joinedContents(rows);
      const queued = await client.query<{
        account_id: string;
        device_id: number;
        first_seq: string;
        last_seq: string;
        stored_ms: string;
      }>({
        name: 'envelopes-insert',
        text: `WITH batch AS (
         SELECT i, a, d, t, substring($4::bytea FROM o + 1 FOR l) AS c, u, n
         FROM unnest($8::uuid[], $1::uuid[], $2::int[], $3::smallint[], $9::int[], $10::int[],
                     $5::bool[])
           WITH ORDINALITY AS x(i, a, d, t, o, l, u, n)
       ),
       counts AS (SELECT a, d, count(*) AS k FROM batch GROUP BY a, d),
       locked AS (
         SELECT account_id, device_id FROM devices
         WHERE (account_id, device_id) IN (SELECT a, d FROM counts)
         ORDER BY account_id, device_id
         FOR UPDATE
       ),
       advanced AS (
         UPDATE devices SET queue_seq = devices.queue_seq + counts.k
         FROM counts JOIN locked ON locked.account_id = counts.a AND locked.device_id = counts.d
         WHERE devices.account_id = counts.a AND devices.device_id = counts.d
         RETURNING devices.account_id, devices.device_id, devices.queue_seq - counts.k AS base
       ),
       inserted AS (
         INSERT INTO envelopes (seq, id, account_id, device_id, type, content, urgent, expires_at)
         -- A removed device has no counter: its row still goes in, and the foreign key refuses
         -- the whole statement (23503), which the send path retries as before.
         SELECT coalesce(advanced.base, 0) + row_number() OVER (PARTITION BY b.a, b.d ORDER BY b.n),
                b.i, b.a, b.d, b.t, b.c, b.u, date_trunc('hour', now()) + make_interval(days => $6::int)
         FROM batch b LEFT JOIN advanced ON advanced.account_id = b.a AND advanced.device_id = b.d
         RETURNING account_id, device_id, seq, id, stored_hour
       )
       SELECT account_id, device_id, first_seq, last_seq,
              (extract(epoch FROM stored_hour) * 1000)::bigint AS stored_ms,
              pg_notify($7, json_build_object('t', 'queued', 'a', account_id, 'd', device_id,
                                              's', last_seq)::text)
       FROM (SELECT account_id, device_id, min(seq) AS first_seq, max(seq) AS last_seq,
                    min(stored_hour) AS stored_hour
             FROM inserted GROUP BY account_id, device_id) AS woken`,
        values: [
          arrayLiteral(rows.map((row) => row.accountId)),
          arrayLiteral(rows.map((row) => row.deviceId)),
          arrayLiteral(rows.map((row) => row.type)),
          contents.joined,
          arrayLiteral(rows.map((row) => row.urgent)),
          ttlDays,
          EVENTS_CHANNEL,
          arrayLiteral(rows.map((row) => row.id)),
          arrayLiteral(contents.offsets),
          arrayLiteral(rows.map((row) => row.content.length)),
        ],
      });
      const over = await client.query({
        name: 'queue-usage-over-caps',
        text: `SELECT 1 FROM queue_usage
         WHERE (account_id, device_id) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))
           AND (envelopes > $3 OR bytes > $4)
         LIMIT 1`,
        values: [
          arrayLiteral(rows.map((row) => row.accountId)),
          arrayLiteral(rows.map((row) => row.deviceId)),
          caps.maxEnvelopes,
          caps.maxBytes,
        ],
      });
      if (over.rows.length > 0) {
        await client.query('ROLLBACK');
        throw queueFull();
      }
      await client.query('COMMIT');
      return queued.rows.map((row) => ({
        accountId: row.account_id,
        deviceId: row.device_id,
        firstSeq: Number(row.first_seq),
        lastSeq: Number(row.last_seq),
        storedHour: storedHourText(Number(row.stored_ms)),
      }));
    } catch (error) {
      if (isDatabaseUnavailable(error)) {
        // A rollback on a dead or silent connection would only wait out another timeout.
        broken = error as Error;
      } else if (!(error instanceof RelayError)) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => {
          broken = rollbackError;
        });
      }
      throw error;
    } finally {
      client.release(broken);
    }
  },

  /**
   * The devices of an account, each with its registration id and what it has queued: the send
   * path's device-set check and its early look at the queue caps, in one query. The same query
   * says whether the sending device still exists, so that a send over an open socket (whose
   * token was checked once) is refused as soon as its device is removed, without a round trip
   * of its own. Answers many sends at once (one query for a whole group of them: the send path
   * reads through a GroupRead), in the order asked.
   */
  async devicesWithQueues(requests: readonly DeviceSetRequest[]): Promise<DeviceSet[]> {
    const result = await pool.query<{
      n: string;
      sender_exists: boolean;
      device_id: number | null;
      registration_id: number;
      queue_seq: string;
      envelopes: number;
      bytes: string;
    }>({
      name: 'devices-with-queues',
      text: `SELECT r.n, EXISTS (SELECT 1 FROM devices s WHERE s.account_id = r.sa AND s.device_id = r.sd)
              AS sender_exists, d.device_id, d.registration_id, d.queue_seq,
              coalesce(q.envelopes, 0) AS envelopes, coalesce(q.bytes, 0) AS bytes
       FROM unnest($1::uuid[], $2::uuid[], $3::int[]) WITH ORDINALITY AS r(a, sa, sd, n)
       LEFT JOIN (devices d LEFT JOIN queue_usage q USING (account_id, device_id))
         ON d.account_id = r.a`,
      values: [
        arrayLiteral(requests.map((request) => request.recipient)),
        arrayLiteral(requests.map((request) => request.sender.accountId)),
        arrayLiteral(requests.map((request) => request.sender.deviceId)),
      ],
    });
    const sets: DeviceSet[] = requests.map(() => ({ devices: new Map(), senderExists: false }));
    for (const row of result.rows) {
      const set = sets[Number(row.n) - 1];
      if (!set) continue;
      set.senderExists = row.sender_exists;
      if (row.device_id === null) continue; // an account without devices: the one sender row
      set.devices.set(row.device_id, {
        registrationId: row.registration_id,
        envelopes: row.envelopes,
        bytes: Number(row.bytes),
        lastSeq: Number(row.queue_seq),
      });
    }
    return sets;
  },

  /**
   * devicesWithQueues for many accounts at once (a multi-recipient upload): each account's
   * devices with what they have queued, and its identity key (each share is sealed to it before
   * it is stored), in one query. An account that does not exist (or has no device left) is absent
   * from both maps.
   */
  async devicesOfAccounts(
    accountIds: readonly string[],
    sender: { readonly accountId: string; readonly deviceId: number },
  ): Promise<{
    accounts: Map<string, Map<number, DeviceQueue>>;
    identityKeys: Map<string, Buffer>;
    senderExists: boolean;
  }> {
    const result = await pool.query<{
      sender_exists: boolean;
      account_id: string | null;
      device_id: number | null;
      registration_id: number;
      identity_key: Buffer;
      queue_seq: string;
      envelopes: number;
      bytes: string;
    }>({
      name: 'devices-of-accounts',
      text: `SELECT s.sender_exists, d.account_id, d.device_id, d.registration_id, a.identity_key,
              d.queue_seq,
              coalesce(q.envelopes, 0) AS envelopes, coalesce(q.bytes, 0) AS bytes
       FROM (SELECT EXISTS (SELECT 1 FROM devices WHERE account_id = $2 AND device_id = $3)
               AS sender_exists) AS s
       LEFT JOIN (devices d JOIN accounts a ON a.id = d.account_id
                  LEFT JOIN queue_usage q USING (account_id, device_id))
         ON d.account_id = ANY($1::uuid[])`,
      values: [accountIds, sender.accountId, sender.deviceId],
    });
    const accounts = new Map<string, Map<number, DeviceQueue>>();
    const identityKeys = new Map<string, Buffer>();
    for (const row of result.rows) {
      if (row.account_id === null || row.device_id === null) continue; // no device matched
      const devices = accounts.get(row.account_id) ?? new Map<number, DeviceQueue>();
      devices.set(row.device_id, {
        registrationId: row.registration_id,
        envelopes: row.envelopes,
        bytes: Number(row.bytes),
        lastSeq: Number(row.queue_seq),
      });
      accounts.set(row.account_id, devices);
      identityKeys.set(row.account_id, row.identity_key);
    }
    return { accounts, identityKeys, senderExists: result.rows[0]?.sender_exists === true };
  },

  /**
   * For each read, the next envelopes of a device's queue after `afterSeq` (at most `limit`, and
   * none once those before it hold `maxBytes` of content), in arrival order: one query for many
   * sockets' reads (a GroupRead in the relay, so that devices draining at once share round
   * trips), answered in the order asked.
   */
  async fetchAfterMany(reads: readonly QueueRead[]): Promise<StoredEnvelope[][]> {
    const result = await pool.query<{
      n: string;
      seq: string;
      id: string;
      type: number;
      content: Buffer;
      urgent: boolean;
      stored_ms: string;
    }>({
      name: 'envelopes-fetch-after-many',
      text: `SELECT r.n, e.seq, e.id, e.type, e.content, e.urgent,
              (extract(epoch FROM e.stored_hour) * 1000)::bigint AS stored_ms
       FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::int[], $5::bigint[]) WITH ORDINALITY
         AS r(a, d, after, wanted, room, n)
       CROSS JOIN LATERAL (
         SELECT * FROM (
           SELECT seq, id, type, content, urgent, stored_hour,
             sum(octet_length(content)) OVER (ORDER BY seq) - octet_length(content) AS before
           FROM envelopes
           WHERE account_id = r.a AND device_id = r.d AND seq > r.after AND expires_at > now()
           ORDER BY seq LIMIT r.wanted) w
         WHERE w.before < r.room) e
       ORDER BY r.n, e.seq`,
      values: [
        arrayLiteral(reads.map((read) => read.accountId)),
        arrayLiteral(reads.map((read) => read.deviceId)),
        arrayLiteral(reads.map((read) => read.afterSeq)),
        arrayLiteral(reads.map((read) => read.limit)),
        arrayLiteral(reads.map((read) => read.maxBytes)),
      ],
    });
    const batches: StoredEnvelope[][] = reads.map(() => []);
    for (const row of result.rows) {
      batches[Number(row.n) - 1]?.push({
        seq: Number(row.seq),
        id: row.id,
        type: row.type,
        content: row.content,
        urgent: row.urgent,
        storedHour: storedHourText(Number(row.stored_ms)),
      });
    }
    return batches;
  },

  /** Deletes acknowledged envelopes (by their primary key: device and queue position). */
  async delete(keys: readonly QueuedEnvelopeKey[]): Promise<void> {
    await pool.query({
      name: 'envelopes-delete',
      text: `DELETE FROM envelopes WHERE (account_id, device_id, seq) IN (
         SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[]))`,
      values: [
        arrayLiteral(keys.map((k) => k.accountId)),
        arrayLiteral(keys.map((k) => k.deviceId)),
        arrayLiteral(keys.map((k) => k.seq)),
      ],
    });
  },

  /** Deletes up to `limit` expired envelopes; returns how many went. */
  async deleteExpired(limit: number): Promise<number> {
    // The limit is written into the statement, not passed: the relay's sessions plan every
    // statement generically (db/database.ts), and a generic plan, not knowing the limit, would
    // expect a tenth of the expired rows and could scan the whole table for each batch.
    if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`bad limit ${limit}`);
    const result = await pool.query(
      `DELETE FROM envelopes WHERE ctid IN (
         SELECT ctid FROM envelopes WHERE expires_at <= now() LIMIT ${limit})`,
    );
    return result.rowCount ?? 0;
  },

  /** What a device has queued, as queue_usage counts it. */
  async usage(accountId: string, deviceId: number): Promise<{ envelopes: number; bytes: number }> {
    const result = await pool.query<{ envelopes: number; bytes: string }>(
      'SELECT envelopes, bytes FROM queue_usage WHERE account_id = $1 AND device_id = $2',
      [accountId, deviceId],
    );
    const row = result.rows[0];
    return { envelopes: row?.envelopes ?? 0, bytes: Number(row?.bytes ?? 0) };
  },

  async countFor(accountId: string, deviceId: number): Promise<number> {
    const result = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM envelopes WHERE account_id = $1 AND device_id = $2',
      [accountId, deviceId],
    );
    return result.rows[0]?.n ?? 0;
  },
});

export type EnvelopesRepository = ReturnType<typeof createEnvelopesRepository>;
