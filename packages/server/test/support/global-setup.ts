import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import pino from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    databaseKind: 'embedded' | 'external';
  }
}

/**
 * One PostgreSQL server for the whole run: the one PRIVCOMM_TEST_DATABASE_URL names (CI points
 * it at the system PostgreSQL 15), or else an embedded one in a temporary directory, so that
 * `npm test` needs nothing installed. Each test file creates its own database on it.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PRIVCOMM_TEST_DATABASE_URL;
  if (external) {
    project.provide('adminDatabaseUrl', external);
    project.provide('databaseKind', 'external');
    return async () => undefined;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-test-pg-'));
  const embedded: EmbeddedDatabase = await startEmbeddedPostgres(dir, pino({ level: 'silent' }));
  project.provide('adminDatabaseUrl', embedded.adminUrl);
  project.provide('databaseKind', 'embedded');
  return async () => {
    await embedded.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
