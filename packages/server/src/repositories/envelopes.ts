import type pg from 'pg';
import { EVENTS_CHANNEL } from '../services/events.ts';

/** One ciphertext for one device, as the send path hands it to storage. */
export interface NewEnvelope {
  accountId: string;
  deviceId: number;
  type: number;
  content: Buffer;
  urgent: boolean;
}

export interface StoredEnvelope {
  seq: number;
  id: string;
  type: number;
  content: Buffer;
  urgent: boolean;
  storedHour: Date;
}

/**
 * The durable queue. Written with plain SQL because it is the hot path: one statement inserts a
 * whole batch from arrays and, in the same implicit transaction, queues one wake-up notification
 * per distinct device, which PostgreSQL delivers only once the rows are committed.
 */
export const createEnvelopesRepository = (pool: pg.Pool, ttlDays: number) => ({
  async insert(rows: readonly NewEnvelope[]): Promise<void> {
    await pool.query(
      `WITH inserted AS (
         INSERT INTO envelopes (account_id, device_id, type, content, urgent, expires_at)
         SELECT a, d, t, c, u, date_trunc('hour', now()) + make_interval(days => $6::int)
         FROM unnest($1::uuid[], $2::int[], $3::smallint[], $4::bytea[], $5::bool[]) AS x(a, d, t, c, u)
         RETURNING account_id, device_id
       )
       SELECT pg_notify($7, json_build_object('t', 'queued', 'a', account_id, 'd', device_id)::text)
       FROM (SELECT DISTINCT account_id, device_id FROM inserted) AS woken`,
      [
        rows.map((row) => row.accountId),
        rows.map((row) => row.deviceId),
        rows.map((row) => row.type),
        rows.map((row) => row.content),
        rows.map((row) => row.urgent),
        ttlDays,
        EVENTS_CHANNEL,
      ],
    );
  },

  /** The next envelopes of a device's queue after `afterSeq`, in arrival order. */
  async fetchAfter(
    accountId: string,
    deviceId: number,
    afterSeq: number,
    limit: number,
  ): Promise<StoredEnvelope[]> {
    const result = await pool.query<{
      seq: string;
      id: string;
      type: number;
      content: Buffer;
      urgent: boolean;
      stored_hour: Date;
    }>(
      `SELECT seq, id, type, content, urgent, stored_hour FROM envelopes
       WHERE account_id = $1 AND device_id = $2 AND seq > $3 AND expires_at > now()
       ORDER BY seq LIMIT $4`,
      [accountId, deviceId, afterSeq, limit],
    );
    return result.rows.map((row) => ({
      seq: Number(row.seq),
      id: row.id,
      type: row.type,
      content: row.content,
      urgent: row.urgent,
      storedHour: row.stored_hour,
    }));
  },

  /** Deletes acknowledged envelopes (by their queue position, which is the primary key). */
  async delete(seqs: readonly number[]): Promise<void> {
    await pool.query('DELETE FROM envelopes WHERE seq = ANY($1::bigint[])', [seqs]);
  },

  /** Deletes up to `limit` expired envelopes; returns how many went. */
  async deleteExpired(limit: number): Promise<number> {
    const result = await pool.query(
      `DELETE FROM envelopes WHERE seq IN (
         SELECT seq FROM envelopes WHERE expires_at <= now() LIMIT $1)`,
      [limit],
    );
    return result.rowCount ?? 0;
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
