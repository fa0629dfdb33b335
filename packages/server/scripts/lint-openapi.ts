/**
 * Lints the relay's OpenAPI document with Redocly's recommended rules (redocly.yaml at the
 * repository root), as CI does: builds the relay in this process on a throwaway embedded
 * PostgreSQL, writes the document it serves at /openapi.json to
 * node_modules/.cache/privcomm/openapi.json, and runs `redocly lint` on it. Exits with the
 * linter's code: any warning or error fails.
 *
 *   npm run lint:openapi
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';

const REPOSITORY_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const require = createRequire(import.meta.url);

/** The document exactly as a running relay serves it. */
const servedDocument = async (dataDir: string): Promise<unknown> => {
  const log = pino({ level: 'silent' });
  const database = await startEmbeddedPostgres(dataDir, log);
  try {
    const config = loadConfig({
      DATABASE_URL: database.url,
      JWT_SECRET: randomBytes(32).toString('base64'),
    });
    const relay = await buildApp(config, { databaseUrl: database.url, logger: log });
    try {
      const response = await relay.app.inject({ method: 'GET', url: '/openapi.json' });
      if (response.statusCode !== 200) throw new Error(`/openapi.json: ${response.statusCode}`);
      return response.json();
    } finally {
      await relay.close();
    }
  } finally {
    await database.stop();
  }
};

/** Runs `redocly lint` on the document in `file`; returns its exit code. */
const lint = (file: string): number => {
  const cli = path.join(
    path.dirname(require.resolve('@redocly/cli/package.json')),
    'bin',
    'cli.js',
  );
  const config = path.join(REPOSITORY_ROOT, 'redocly.yaml');
  const result = spawnSync(
    process.execPath,
    [cli, 'lint', file, '--config', config, '--max-problems', '1000'],
    {
      stdio: 'inherit',
      // No usage data and no update check: CI has no network, and the linter needs none.
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    },
  );
  return result.status ?? 1;
};

// Where .redocly.lint-ignore.yaml expects the document; it is left there to be read.
const file = path.join(REPOSITORY_ROOT, 'node_modules', '.cache', 'privcomm', 'openapi.json');
// The throwaway embedded PostgreSQL's data directory.
const dataDir = mkdtempSync(path.join(tmpdir(), 'privcomm-openapi-'));
const document = await servedDocument(dataDir).finally(() =>
  rmSync(dataDir, { recursive: true, force: true }),
);
mkdirSync(path.dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
process.exit(lint(file));
