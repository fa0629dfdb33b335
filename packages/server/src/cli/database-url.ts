import { ConfigError, environmentWithDotenv, loadConfig, type RelayConfig } from '../config.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.ts';
import { createLogger } from '../logger.ts';

/**
 * For the operator commands: the same configuration as the relay, and the same database (the
 * embedded one is started for the duration of the command if no DATABASE_URL is set; stop the
 * relay first, since both cannot run the embedded server on one DATA_DIR).
 */
export const withDatabase = async <T>(
  run: (url: string, config: RelayConfig) => Promise<T>,
): Promise<T> => {
  let config: RelayConfig;
  try {
    config = loadConfig(environmentWithDotenv(process.env, process.cwd()));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  let embedded: EmbeddedDatabase | undefined;
  if (config.databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres(config.dataDir, createLogger('warn'));
  }
  try {
    return await run(config.databaseUrl ?? (embedded as EmbeddedDatabase).url, config);
  } finally {
    await embedded?.stop();
  }
};
