import { buildApp } from './app.ts';
import { ConfigError, environmentWithDotenv, loadConfig, type RelayConfig } from './config.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.ts';
import { startDevTurn, type DevTurn } from './dev-turn.ts';
import { createLogger, safeError } from './logger.ts';
import { checkDatabase, checkDataDir, checkPortFree, StartupError } from './preflight.ts';

/**
 * Starts one relay instance: validate the configuration; check, before starting anything, that
 * DATA_DIR can be written, the port is free and the database answers and is recent enough; start
 * the embedded PostgreSQL when no DATABASE_URL is given, and the development coturn when the
 * relay serves this machine alone; then listen. SIGTERM/SIGINT stop it cleanly: no new
 * connections, sockets closed with 1001, in-flight requests finished, coturn and the database
 * stopped.
 */
const main = async (): Promise<void> => {
  let config: RelayConfig;
  try {
    config = loadConfig(environmentWithDotenv(process.env, process.cwd()));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`privcomm relay: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  try {
    if (config.databaseUrl === undefined) checkDataDir(config.dataDir);
    await checkPortFree(config.host, config.port);
    if (config.databaseUrl !== undefined) await checkDatabase(config.databaseUrl);
  } catch (error) {
    if (error instanceof StartupError) {
      process.stderr.write(`privcomm relay: cannot start: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  let embedded: EmbeddedDatabase | undefined;
  if (config.databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres(config.dataDir, log);
    log.info('embedded PostgreSQL started');
  }
  let devTurn: DevTurn | undefined;
  let relay: Awaited<ReturnType<typeof buildApp>>;
  try {
    devTurn = await startDevTurn(config, log);
    relay = await buildApp(devTurn ? { ...config, turn: devTurn.turn } : config, {
      databaseUrl: config.databaseUrl ?? (embedded as EmbeddedDatabase).url,
      logger: log,
    });
  } catch (error) {
    await devTurn?.stop();
    await embedded?.stop();
    throw error;
  }
  // Fastify's own listen line names the bound address; ours below says what an operator needs.
  await relay.app.listen({
    host: config.host,
    port: config.port,
    listenTextResolver: () => 'bound',
  });
  const address = relay.app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info(
    {
      port,
      database: embedded ? 'embedded' : 'external',
      registration: config.registration,
      turn: devTurn ? 'development' : config.turn ? 'configured' : 'none',
    },
    'relay listening',
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const deadline = setTimeout(() => process.exit(1), 10_000);
    deadline.unref();
    relay
      .close()
      .then(() => devTurn?.stop())
      .then(() => embedded?.stop())
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        log.error({ err: safeError(error) }, 'unclean stop');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
};

main().catch((error: unknown) => {
  process.stderr.write(`privcomm relay: failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
