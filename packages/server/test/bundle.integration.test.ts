import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { JWT_SECRET } from './support/relay.ts';

/**
 * What the container image and the systemd unit run: `npm run build:server`'s bundle, copied with
 * the migrations into a directory with no node_modules and no TypeScript, started by plain node.
 */
const SERVER = fileURLToPath(new URL('..', import.meta.url));
const nativeBufferutil = ((): boolean => {
  try {
    return String(createRequire(import.meta.url)('bufferutil').mask).includes('[native code]');
  } catch {
    return false;
  }
})();

let app: string;
let database: { url: string; drop: () => Promise<void> };

beforeAll(async () => {
  execFileSync(process.execPath, [path.join(SERVER, 'scripts', 'bundle.js')], { stdio: 'pipe' });
  app = mkdtempSync(path.join(tmpdir(), 'privcomm-bundle-'));
  cpSync(path.join(SERVER, 'dist'), path.join(app, 'dist'), { recursive: true });
  cpSync(path.join(SERVER, 'migrations'), path.join(app, 'migrations'), { recursive: true });
  database = await createTestDatabase();
}, 120_000);
afterAll(async () => {
  await database?.drop();
  rmSync(app, { recursive: true, force: true });
});

const env = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '',
  DATABASE_URL: database.url,
  JWT_SECRET,
  PORT: '0',
});

describe('the compiled relay (dist/bin)', () => {
  it('runs with plain node, without node_modules: migrates, serves the API and its docs', async () => {
    const relay = spawn(process.execPath, ['dist/bin/main.mjs'], {
      cwd: app,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const onData = (chunk: Buffer): void => {
          output += chunk.toString('utf8');
          const match = /"port":(\d+)[^\n]*"msg":"relay listening"/.exec(output);
          if (match) resolve(Number(match[1]));
        };
        relay.stdout.on('data', onData);
        relay.stderr.on('data', onData);
        relay.once('exit', () => reject(new Error(`the bundle exited:\n${output}`)));
      });
      expect(output).toContain('"msg":"migrations applied"');
      const get = (route: string) => fetch(`http://127.0.0.1:${port}${route}`);
      expect(await (await get('/ready')).json()).toEqual({ status: 'ready' });
      const docs = await get('/docs/');
      expect(docs.status).toBe(200);
      expect(await docs.text()).toContain('swagger-ui');
      const script = await get('/docs/static/swagger-ui-bundle.js');
      expect(script.status).toBe(200);
      expect((await script.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
      expect(((await (await get('/openapi.json')).json()) as { openapi: string }).openapi).toBe(
        '3.1.0',
      );
    } finally {
      relay.kill('SIGTERM');
      await new Promise((resolve) => relay.once('close', resolve));
    }
    expect(relay.exitCode, output).toBe(0);
  });

  // bufferutil ships prebuilt binaries for linux-x64 (here) but not linux-arm64, where npm may
  // not have built it: then there is nothing to carry, and ws uses its JavaScript.
  it.skipIf(!nativeBufferutil)(
    "carries ws's native frame masking (bufferutil) beside the bundle",
    () => {
      const script = [
        "import { createRequire } from 'node:module';",
        "const require = createRequire(process.cwd() + '/dist/bin/main.mjs');",
        "process.stdout.write(require.resolve('bufferutil') + ' ' + String(require('bufferutil').mask));",
      ].join('\n');
      const loaded = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: app,
        encoding: 'utf8',
      });
      expect(loaded).toContain(path.join(app, 'dist', 'node_modules', 'bufferutil'));
      expect(loaded).toContain('[native code]');
    },
  );

  it('runs the operator commands', () => {
    const check = execFileSync(process.execPath, ['dist/bin/admin.mjs', 'check'], {
      cwd: app,
      env: env(),
      encoding: 'utf8',
    });
    expect(check).toMatch(/^ok {4}schema: every migration of this relay is applied$/m);
    const migrate = execFileSync(process.execPath, ['dist/bin/migrate.mjs'], {
      cwd: app,
      env: env(),
      encoding: 'utf8',
    });
    expect(migrate).toBe('database is up to date\n');
  });
});
