import pino from 'pino';
import { startEmbeddedPostgres } from '../../src/db/embedded.ts';

/**
 * A process that starts the embedded PostgreSQL on DATA_DIR, says "ready" and waits: tests kill
 * it with SIGKILL to leave its database behind, as a killed relay would.
 */
const dataDir = process.env.DATA_DIR;
if (!dataDir) throw new Error('DATA_DIR is required');
await startEmbeddedPostgres(dataDir, pino({ level: 'silent' }));
process.stdout.write('ready\n');
setInterval(() => undefined, 60_000);
