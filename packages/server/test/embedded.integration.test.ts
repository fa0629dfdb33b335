import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';

describe('embedded PostgreSQL', () => {
  it('keeps its data across restarts and refuses a second server on the same DATA_DIR', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-embedded-'));
    const log = pino({ level: 'silent' });
    try {
      const first = await startEmbeddedPostgres(dataDir, log);
      const client = new pg.Client({ connectionString: first.url });
      await client.connect();
      await client.query('CREATE TABLE kept (value text)');
      await client.query("INSERT INTO kept VALUES ('still here')");
      await client.end();

      await expect(startEmbeddedPostgres(dataDir, log)).rejects.toThrow(
        /already running \(pid \d+\)/,
      );

      await first.stop();
      const second = await startEmbeddedPostgres(dataDir, log);
      const again = new pg.Client({ connectionString: second.url });
      await again.connect();
      expect((await again.query('SELECT value FROM kept')).rows).toEqual([{ value: 'still here' }]);
      await again.end();
      await second.stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
