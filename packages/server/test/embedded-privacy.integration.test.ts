import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';

/**
 * What the embedded PostgreSQL keeps beyond the rows: its log, commit timestamps and old
 * write-ahead log. SECURITY.md ("what a copy of the disk shows") states these settings.
 */
describe('embedded PostgreSQL settings that limit what its files and log keep', () => {
  it('logs a failed statement without its values, keeps no commit times and no recycled WAL', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-embedded-privacy-'));
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const server = await startEmbeddedPostgres(dataDir, pino({ level: 'trace' }, sink));
    try {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        const settings = await client.query<{ name: string; setting: string; unit: string | null }>(
          `SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)`,
          [
            [
              'track_commit_timestamp',
              'wal_recycle',
              'log_error_verbosity',
              'log_min_error_statement',
              'wal_segment_size',
            ],
          ],
        );
        const byName = Object.fromEntries(settings.rows.map((row) => [row.name, row.setting]));
        expect(byName).toEqual({
          track_commit_timestamp: 'off',
          wal_recycle: 'off',
          log_error_verbosity: 'terse',
          log_min_error_statement: 'panic',
          wal_segment_size: String(1024 * 1024),
        });

        // A unique violation: PostgreSQL's DETAIL would quote the key, its STATEMENT the query.
        await client.query('CREATE TABLE probe (value text PRIMARY KEY)');
        await client.query(`INSERT INTO probe VALUES ('marker-7f3a9c')`);
        await expect(client.query(`INSERT INTO probe VALUES ('marker-7f3a9c')`)).rejects.toThrow(
          /duplicate key/,
        );
      } finally {
        await client.end();
      }
      await expect
        .poll(() => lines.some((line) => line.includes('duplicate key')), { timeout: 5_000 })
        .toBe(true);
      expect(lines.join('\n')).not.toContain('marker-7f3a9c');
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
