import { TURN_URL_PATTERN } from '@privcomm/wire';
import { checkSchema, SchemaTooNewError } from '../../db/migrate.ts';
import { stunAnswers } from '../../dev-turn.ts';
import { checkDatabase, describeDatabase } from '../../preflight.ts';
import type { AdminCommand } from './command.ts';

/** The UDP TURN URLs' host and port, which a STUN Binding request can probe. */
const udpTurnServers = (urls: readonly string[]): { host: string; port: number }[] =>
  urls.flatMap((url) => {
    const match = new RegExp(TURN_URL_PATTERN).exec(url);
    if (!match || match[1] !== 'turn' || (match[4] ?? 'udp') !== 'udp') return [];
    return [{ host: (match[2] ?? '').replace(/^\[|\]$/g, ''), port: Number(match[3] ?? 3478) }];
  });

/**
 * `check`: the configuration loads (the caller already did that), the database answers and is
 * recent enough, the schema matches this relay, and each UDP TURN server answers STUN. One line
 * per check, `ok`, `warn` or `FAIL`; exit 1 if any failed. Changes nothing.
 */
export const checkDeployment: AdminCommand = async ({ database, config, out, url }) => {
  let failed = false;
  const line = (status: 'ok' | 'warn' | 'FAIL', text: string): void => {
    if (status === 'FAIL') failed = true;
    out(`${status.padEnd(4)}  ${text}`);
  };
  line(
    'ok',
    `configuration: REGISTRATION=${config.registration}, ${config.databaseUrl ? 'external' : 'embedded'} database, ${config.jwtVerifySecrets.length} extra verification key(s)`,
  );
  try {
    const major = await checkDatabase(url);
    line('ok', `database ${describeDatabase(url)}: PostgreSQL ${major}`);
  } catch (error) {
    line('FAIL', (error as Error).message);
    return 1;
  }
  try {
    await checkSchema(database.pool);
    line('ok', 'schema: every migration of this relay is applied');
  } catch (error) {
    if (error instanceof SchemaTooNewError || !config.migrateOnStart) {
      line('FAIL', `schema: ${(error as Error).message}`);
    } else {
      line('ok', 'schema: migrations pending; the relay applies them at start (MIGRATE_ON_START)');
    }
  }
  if (config.turn === undefined) {
    line(
      'warn',
      config.devTurn
        ? 'TURN: TURN_URLS unset; `npm start` runs a development coturn if turnserver is installed'
        : 'TURN: TURN_URLS unset, so calls get no TURN server (GET /v1/turn answers 404)',
    );
  } else {
    const servers = udpTurnServers(config.turn.urls);
    if (servers.length === 0) line('warn', 'TURN: no UDP turn: URL to probe');
    for (const { host, port } of servers) {
      if (await stunAnswers(port, 3_000, host)) line('ok', `TURN: ${host}:${port} answers STUN`);
      else
        line(
          'FAIL',
          `TURN: ${host}:${port} does not answer STUN over UDP: start coturn, or open the port`,
        );
    }
  }
  if (config.metricsToken === undefined && config.registration === 'invite') {
    line('warn', 'METRICS_TOKEN unset: /metrics is open to anyone who reaches the relay');
  }
  return failed ? 1 : 0;
};
