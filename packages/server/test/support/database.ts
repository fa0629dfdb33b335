import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** A fresh database on the run's PostgreSQL server, dropped by the returned function. */
export const createTestDatabase = async (): Promise<{ url: string; drop: () => Promise<void> }> => {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `privcomm_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        // pool.end() and relay.close() resolve before their sockets are closed. A forced drop
        // right then terminates those closing connections (57P01), which their clients report as
        // an unhandled error in whichever test runs next. Let them go first (briefly); FORCE
        // then ends only what a test really left open.
        for (let waited = 0; waited < 5_000; waited += 50) {
          const open = await client.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
            [name],
          );
          if (open.rows[0]?.n === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
};

/**
 * Every row of every table as text, the way a database dump would show it (bytea as hex):
 * what a thief of the database would hold.
 */
export const dumpDatabase = async (url: string): Promise<string> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
       WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
    );
    const parts: string[] = [];
    for (const { table_name: table } of tables.rows) {
      const rows = await client.query(`SELECT row_to_json(t)::text AS row FROM "${table}" t`);
      parts.push(`-- ${table}`, ...rows.rows.map((row: { row: string }) => row.row));
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
};

/** An envelope row as a test reads it from the table, to put back. */
export interface EnvelopeRow {
  id: string;
  account_id: string;
  device_id: number;
  type: number;
  content: Buffer;
  urgent: boolean;
  stored_hour?: Date;
  expires_at: Date;
}

/**
 * Puts a copy of an envelope row back in its device's queue, at the device's next position, as
 * the relay stores envelopes: what a redelivery after a lost acknowledgement (same id) or a replay
 * (new id) looks like to a client.
 */
export const requeueEnvelope = async (db: pg.Pool | pg.Client, row: EnvelopeRow): Promise<void> => {
  await db.query(
    `WITH advanced AS (
       UPDATE devices SET queue_seq = queue_seq + 1
       WHERE account_id = $2 AND device_id = $3
       RETURNING queue_seq
     )
     INSERT INTO envelopes (seq, id, account_id, device_id, type, content, urgent, stored_hour, expires_at)
     SELECT queue_seq, $1, $2, $3, $4, $5, $6, coalesce($7, date_trunc('hour', now())), $8
     FROM advanced`,
    [
      row.id,
      row.account_id,
      row.device_id,
      row.type,
      row.content,
      row.urgent,
      row.stored_hour ?? null,
      row.expires_at,
    ],
  );
};

/**
 * Every device's queue counter, in one string: it changes on every envelope stored, even one
 * deleted right after, so an unchanged value proves nothing was stored meanwhile.
 */
export const queueCounters = async (db: pg.Pool | pg.Client): Promise<string> => {
  const result = await db.query<{ counters: string | null }>(
    `SELECT string_agg(queue_seq::text, ',' ORDER BY account_id, device_id) AS counters FROM devices`,
  );
  return result.rows[0]?.counters ?? '';
};
