/**
 * The relays the app's tests talk to, as one Node process (run under tsx by global-setup.js; .mts: an ES module in this CommonJS package):
 * a PostgreSQL (PRIVCOMM_TEST_DATABASE_URL's, or an embedded one in a temporary directory, as
 * the server's own tests do), one database, and two real relays on it: open registration (with a
 * throwaway coturn for calls), and
 * invite-only with codes made by the operator's own `admin invite create`. Prints one JSON line
 * with their addresses, then runs until SIGTERM. With PRIVCOMM_TEST_RELAYS=open (the browser
 * test), only the open relay and its coturn: no invitations, fewer processes to start.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import {
  JWT_SECRET,
  portToRestartOn,
  startCoturn,
  startRelay,
  type TestRelay,
} from '@privcomm/server/testing';
// Not part of the server's public exports: the same helper its own global setup uses.
import { startEmbeddedPostgres } from '../../../../packages/server/src/db/embedded.ts';

const SERVER_ROOT = fileURLToPath(new URL('../../../../packages/server', import.meta.url));

const main = async (): Promise<void> => {
  let adminUrl = process.env.PRIVCOMM_TEST_DATABASE_URL;
  let stopEmbedded = async (): Promise<void> => undefined;
  if (!adminUrl) {
    const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-mobile-pg-'));
    const embedded = await startEmbeddedPostgres(dir, pino({ level: 'silent' }));
    adminUrl = embedded.adminUrl;
    stopEmbedded = async () => {
      await embedded.stop();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  const name = `privcomm_mobile_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();

  const dropDatabase = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.end();
    await stopEmbedded();
  };

  // Calls need TURN: a throwaway coturn on loopback (the relay hands out its credentials).
  const coturn = await startCoturn();
  const turn = {
    TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=udp`,
    TURN_SECRET: coturn.secret,
  };

  if (process.env.PRIVCOMM_TEST_RELAYS === 'open') {
    const open = await startRelay(databaseUrl, turn);
    const stopOpen = async (): Promise<void> => {
      await open.close();
      await coturn.stop();
      await dropDatabase();
    };
    process.on('SIGTERM', () => void stopOpen().then(() => process.exit(0)));
    process.stdout.write(`${JSON.stringify({ relayUrl: open.url, databaseUrl })}\n`);
    return;
  }

  const open = await startRelay(databaseUrl, turn);
  const inviteOnly = await startRelay(databaseUrl, { REGISTRATION: 'invite' });
  // A relay the reconnection test stops (SIGUSR1) and starts again on the same port (SIGUSR2),
  // as an operator's restart does; one signal is handled after the other.
  const restartPort = String(await portToRestartOn());
  let restartable: TestRelay | undefined = await startRelay(databaseUrl, { PORT: restartPort });
  const restartableUrl = restartable.url;
  let restarts: Promise<void> = Promise.resolve();
  const restart = (work: () => Promise<void>) => {
    restarts = restarts.then(work).catch((error: unknown) => {
      process.stderr.write(`restartable relay: ${String((error as Error).stack ?? error)}\n`);
    });
  };
  process.on('SIGUSR1', () =>
    restart(async () => {
      await restartable?.close();
      restartable = undefined;
    }),
  );
  process.on('SIGUSR2', () =>
    restart(async () => {
      restartable ??= await startRelay(databaseUrl, { PORT: restartPort });
    }),
  );
  const inviteCodes = execFileSync(
    process.execPath,
    ['--import', 'tsx', path.join('src', 'cli', 'admin.ts'), 'invite', 'create', '--count', '5'],
    {
      cwd: SERVER_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, JWT_SECRET },
    },
  )
    .toString()
    .trim()
    .split('\n');

  const stop = async (): Promise<void> => {
    await open.close();
    await inviteOnly.close();
    await restarts;
    await restartable?.close();
    await coturn.stop();
    await dropDatabase();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.stdout.write(
    `${JSON.stringify({ relayUrl: open.url, inviteRelayUrl: inviteOnly.url, restartableUrl, inviteCodes, databaseUrl })}\n`,
  );
};

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error).stack ?? error)}\n`);
  process.exit(1);
});
