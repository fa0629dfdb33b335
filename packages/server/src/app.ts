import websocket from '@fastify/websocket';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import pg from 'pg';
import type { Logger } from 'pino';
import { MAX_FRAME_BYTES } from '@privcomm/wire';
import type { RelayConfig, TrustProxy } from './config.ts';
import type { RelayContext } from './context.ts';
import { openDatabase } from './db/database.ts';
import { createDiscovery } from './discovery/discovery.ts';
import { registerDiscoveryRoutes } from './discovery/routes.ts';
import { isDatabaseUnavailable } from './db/executor.ts';
import { checkSchema, migrate } from './db/migrate.ts';
import { RelayError } from './errors.ts';
import { createLogger, safeError } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { createAccountsRepository } from './repositories/accounts.ts';
import { createChallengesRepository, type UsedChallenge } from './repositories/challenges.ts';
import { createDevicesRepository, type DeviceKey } from './repositories/devices.ts';
import {
  committedEnvelopes,
  createEnvelopesRepository,
  type DeviceSet,
  type DeviceSetRequest,
  type NewEnvelope,
  type QueueRead,
  type StoredEnvelope,
} from './repositories/envelopes.ts';
import { createKeysRepository } from './repositories/keys.ts';
import { registerAccountRoutes } from './routes/accounts.ts';
import { registerAuthRoutes } from './routes/auth.ts';
import { registerDeviceRoutes } from './routes/devices.ts';
import { registerDocsUi, registerOpenApi } from './routes/docs.ts';
import { registerKeyRoutes } from './routes/keys.ts';
import { registerMessageRoutes } from './routes/messages.ts';
import { registerOperationRoutes } from './routes/operations.ts';
import { registerProvisioningRoutes } from './routes/provisioning.ts';
import { registerTurnRoutes } from './routes/turn.ts';
import { registerWebSocketRoute } from './routes/websocket.ts';
import { AcknowledgementDeletes } from './services/acknowledgements.ts';
import { challengeKey } from './services/challenges.ts';
import { EventListener } from './services/events.ts';
import { DeliverFirst } from './services/deliver-first.ts';
import { GroupCommit } from './services/group-commit.ts';
import { GroupRead } from './services/group-read.ts';
import { runJanitor, startJanitor } from './services/janitor.ts';
import { MessageSender } from './services/message-sender.ts';
import { RateLimiter } from './services/rate-limiter.ts';
import { DeviceTokens, type AuthenticatedDevice } from './services/tokens.ts';
import { ConnectionRegistry } from './ws/connection-registry.ts';
import { ProvisioningRegistry } from './ws/provisioning-socket.ts';
import { UnauthenticatedSockets } from './ws/unauthenticated-sockets.ts';

/** Largest HTTP body: six devices' worth of 96 KiB ciphertexts in base64, with room to spare. */
export const BODY_LIMIT_BYTES = 1024 * 1024;

export interface Relay {
  readonly app: FastifyInstance;
  readonly context: RelayContext;
  /** Runs one janitor pass now (tests and the admin command use it). */
  readonly runJanitor: () => Promise<number>;
  /** Stops accepting work, closes sockets (1001), and releases the database. */
  close(): Promise<void>;
}

/** Maps anything thrown in a request to a catalogue error; unknown errors become INTERNAL. */
const toRelayError = (error: FastifyError | Error): RelayError => {
  if (error instanceof RelayError) return error;
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) return new RelayError('VALIDATION_FAILED', fastifyError.message);
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RelayError('BODY_TOO_LARGE');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RelayError('UNSUPPORTED_MEDIA_TYPE');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new RelayError('MALFORMED_JSON');
  }
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return new RelayError('MALFORMED_JSON');
  }
  if (isDatabaseUnavailable(error)) return new RelayError('UNAVAILABLE');
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new RelayError('VALIDATION_FAILED', fastifyError.code);
  }
  return new RelayError('INTERNAL');
};

const bearerToken = (request: FastifyRequest): string => {
  const match = /^Bearer ([A-Za-z0-9._~+/=-]{1,4096})$/.exec(request.headers.authorization ?? '');
  if (!match?.[1]) throw new RelayError('UNAUTHENTICATED');
  return match[1];
};

/**
 * Fastify's form of TRUST_PROXY. With N hops the socket peer and the N-1 entries nearest the end
 * of X-Forwarded-For are trusted, so request.ip is the entry the N-th proxy appended; entries
 * further left are the client's own words and never reached.
 */
const trustProxyOption = (
  trust: TrustProxy,
): boolean | string[] | ((address: string, hop: number) => boolean) => {
  if (trust === false) return false;
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return [...trust];
};

export interface BuildOptions {
  /** The database to use: config.databaseUrl, or the embedded server's URL. */
  readonly databaseUrl: string;
  readonly logger?: Logger;
}

/** Builds one relay instance: database, listener, services, routes. Tests use it directly. */
export const buildApp = async (config: RelayConfig, options: BuildOptions): Promise<Relay> => {
  const log = options.logger ?? createLogger(config.logLevel);
  if (config.movedSecrets.length > 0) {
    log.info(
      { files: config.movedSecrets },
      'moved secrets out of DATA_DIR/secrets into SECRETS_DIR: back them up apart from the data',
    );
  }
  const database = openDatabase(options.databaseUrl, config.databasePoolSize, log);
  if (config.migrateOnStart) {
    // Migrations may run long (an index on a full queue): on their own connection, without the
    // pool's query timeout.
    const migrations = new pg.Pool({ connectionString: options.databaseUrl, max: 1 });
    const applied = await migrate(migrations).finally(() => migrations.end());
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
  } else {
    await checkSchema(database.pool);
  }
  const metrics = createMetrics();
  const devices = createDevicesRepository(database.db);
  // A failed group is tried again key by key, so that one bad key fails only its own caller;
  // not when the database is away, which would only fail each of them once more, later.
  const unlessDatabaseUnavailable = (error: unknown): boolean => !isDatabaseUnavailable(error);
  // A login reads its device's key twice (the challenge checks that the device exists), and every
  // authenticated request checks that its device still exists: concurrent ones share one query,
  // as sends share their device-set query (a read that starts after it was asked for).
  const authKeys = new GroupRead<DeviceKey, Buffer | undefined>((keys) => devices.authKeys(keys), {
    retryAlone: unlessDatabaseUnavailable,
  });
  const authKeyOf = (accountId: string, deviceId: number): Promise<Buffer | undefined> =>
    authKeys.get({ accountId, deviceId });
  const deviceExists = async (accountId: string, deviceId: number): Promise<boolean> =>
    (await authKeyOf(accountId, deviceId)) !== undefined;
  // Message sockets logging in at once share their statement too (repositories/devices.ts).
  const connections = new GroupRead<DeviceKey, number | undefined>(
    (keys) => devices.announceConnections(keys),
    { retryAlone: unlessDatabaseUnavailable },
  );
  // Concurrent logins use their challenges up in one statement. A GroupRead although it writes:
  // the statement decides every challenge at once, so a group that failed wrote nothing, and its
  // challenges may be tried again one by one. Not when the database went away, where the group
  // may have committed unseen; and were it retried then, a challenge would only be found used
  // (a login refused, never a second token).
  const challenges = createChallengesRepository(database.db);
  const usedChallenges = new GroupRead<UsedChallenge, boolean>(
    (batch) => challenges.markUsed(batch),
    { retryAlone: unlessDatabaseUnavailable },
  );
  const envelopes = createEnvelopesRepository(database.pool, config.envelopeTtlDays, config.queue);
  const tokens = new DeviceTokens(config.jwtSecret, config.jwtVerifySecrets);
  const registry = new ConnectionRegistry(log, async (sessions) => {
    const alive = await Promise.all(
      sessions.map(async (session) => deviceExists(session.accountId, session.deviceId)),
    );
    return new Set(sessions.filter((_, index) => alive[index]));
  });
  const provisioning = new ProvisioningRegistry();
  const listener = new EventListener(
    options.databaseUrl,
    {
      onEvent: (event) => {
        registry.onEvent(event);
        provisioning.onEvent(event);
      },
      onResync: () => registry.onResync(),
    },
    log,
  );
  await listener.start();

  const authenticateToken = async (token: string): Promise<AuthenticatedDevice> => {
    const device = await tokens.verify(token);
    // A removed device's unexpired tokens must stop working at once, on every instance. (The
    // message socket makes the same check in its login statement: routes/websocket.ts.)
    if (!(await deviceExists(device.accountId, device.deviceId))) {
      throw new RelayError('UNAUTHENTICATED');
    }
    return device;
  };

  const limiters = {
    registration: new RateLimiter(config.rateLimits.registration),
    auth: new RateLimiter(config.rateLimits.auth),
    prekeyFetch: new RateLimiter(config.rateLimits.prekeyFetch),
    prekeyRequester: new RateLimiter(config.rateLimits.prekeyRequester),
    prekeyTarget: new RateLimiter(config.rateLimits.prekeyTarget),
    messages: new RateLimiter(config.rateLimits.messages),
    turn: new RateLimiter(config.rateLimits.turn),
    // A bucket of SEND_BYTES_PER_HOUR bytes that refills completely in an hour.
    sendBytes: new RateLimiter({
      burst: config.sendBytesPerHour,
      refillSeconds: 3600 / config.sendBytesPerHour,
    }),
    login: new RateLimiter(config.rateLimits.login),
  };
  const discovery = config.discovery && createDiscovery(config.discovery, database.db);
  const pruneLimiters = setInterval(() => {
    for (const limiter of Object.values(limiters)) limiter.prune();
    discovery?.prune();
  }, 60_000);
  pruneLimiters.unref();

  // Concurrent sends share one device-set query (one per message was the send path's dearest
  // round trip). A read, so batching it changes no guarantee: the insert re-checks what matters.
  const deviceSets = new GroupRead<DeviceSetRequest, DeviceSet>(
    (requests) => envelopes.devicesWithQueues(requests),
    { retryAlone: unlessDatabaseUnavailable },
  );
  // Sockets reading their queues at once (many devices draining) share one query: a drain of
  // 200 devices cost a query, and its system calls, per half window of each (docs/benchmarks.md,
  // item 29). At most 16 reads per query, each of at most WS_WINDOW_BYTES (and one envelope):
  // one result stays within some 20 MiB at the defaults.
  const queueReads = new GroupRead<QueueRead, StoredEnvelope[]>(
    (reads) => envelopes.fetchAfterMany(reads),
    { maxKeys: 16, retryAlone: unlessDatabaseUnavailable },
  );
  // Committed envelopes go straight to this instance's sockets: no read back for a local
  // recipient (the other instances learn of them from the insert's NOTIFY).
  const writer = new GroupCommit<NewEnvelope>(
    async (rows) => {
      const expected = registry.expect(new Set(rows.map((r) => `${r.accountId}.${r.deviceId}`)));
      let queued;
      try {
        queued = await envelopes.insert(rows);
      } catch (error) {
        registry.offer(new Map(), expected);
        throw error;
      }
      try {
        registry.offer(committedEnvelopes(rows, queued), expected);
      } catch (error) {
        // The rows are committed: a failed hand-over must not fail the write (which the group
        // commit would retry, storing them twice). The NOTIFY wakes the sockets anyway.
        log.warn({ err: safeError(error) }, 'committed envelopes not handed over');
      }
    },
    {
      retryAlone: unlessDatabaseUnavailable,
    },
  );
  const deliverFirst = new DeliverFirst(
    (accountId, deviceId) => registry.local(accountId, deviceId),
    config.ws.directWindowMs,
    (rows) => writer.submit(rows),
    metrics,
  );
  const context: RelayContext = {
    config,
    log,
    database,
    metrics,
    accounts: createAccountsRepository(database.db),
    devices,
    authKeyOf,
    deviceExists,
    keys: createKeysRepository(database.db),
    announceConnection: (accountId, deviceId) => connections.get({ accountId, deviceId }),
    useChallenge: (challenge) => usedChallenges.get(challenge),
    challengeKey: challengeKey(config.jwtSecret),
    challengeVerifyKeys: config.jwtVerifySecrets.map(challengeKey),
    unauthenticated: new UnauthenticatedSockets(config.ws.unauthenticatedPerAddress),
    envelopes,
    readQueue: (read) => queueReads.get(read),
    acks: new AcknowledgementDeletes((keys) => envelopes.delete(keys), log),
    tokens,
    sender: new MessageSender(
      database.pool,
      (request) => deviceSets.get(request),
      envelopes,
      config.queue,
      deliverFirst,
      limiters.messages,
      metrics,
      limiters.sendBytes,
    ),
    registry,
    listener,
    limiters,
    authenticateRequest: (request) => authenticateToken(bearerToken(request)),
  };

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Fastify's request log would write client addresses and URLs with ids: off.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    requestTimeout: 30_000,
    connectionTimeout: 30_000,
    // Node's own default header timeout is 60 s, checked only every 30 s: a client sending its
    // headers a byte at a time held a connection for a minute or more. The whole request, headers
    // included, gets 30 s, checked every second.
    http: { headersTimeout: 30_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000 },
    // A hop count or a list of proxy addresses (config.ts refuses `true`): request.ip is then the
    // address the nearest trusted proxy saw, never an entry the client wrote.
    trustProxy: trustProxyOption(config.trustProxy),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  });
  // Fastify parses text/plain by default; the API speaks JSON only, so anything else is 415.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const relayError = toRelayError(error);
    if (relayError.status >= 500) {
      log.error(
        { err: safeError(error), route: request.routeOptions.url, code: relayError.code },
        'request failed',
      );
    }
    if (relayError.extra.retryAfterSeconds !== undefined) {
      void reply.header('retry-after', String(relayError.extra.retryAfterSeconds));
    }
    return reply.code(relayError.status).send(relayError.toBody());
  });
  app.setNotFoundHandler((_request, reply) =>
    reply.code(404).send(new RelayError('NOT_FOUND').toBody()),
  );
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });

  await registerOpenApi(app);
  await app.register(websocket, {
    options: { maxPayload: MAX_FRAME_BYTES },
    // A client's broken frame (too big: 1009, not UTF-8: 1007) is not a relay failure: ws has
    // already written a close frame with the right code, ends the socket once it is out, and
    // destroys it if the client has not closed within its close timeout. Terminating here would
    // throw away that close frame while the socket is corked (write-coalescing.ts), and the client
    // would see 1006 instead of a reason.
    errorHandler: (error, socket) => {
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
        log.debug({ code }, 'websocket protocol error');
        return;
      }
      log.error({ err: safeError(error) }, 'websocket handler failed');
      socket.terminate();
    },
  });
  registerOperationRoutes(app, context);
  registerAccountRoutes(app, context);
  registerAuthRoutes(app, context);
  registerDeviceRoutes(app, context);
  registerKeyRoutes(app, context);
  registerMessageRoutes(app, context);
  registerWebSocketRoute(app, context);
  registerProvisioningRoutes(app, context, provisioning);
  registerTurnRoutes(app, context);
  registerDiscoveryRoutes(app, context, discovery);
  await registerDocsUi(app);
  await app.ready();

  const janitor = () => runJanitor(database, envelopes, metrics);
  const stopJanitor = startJanitor(config.janitorIntervalMs, janitor, log);

  return {
    app,
    context,
    runJanitor: janitor,
    async close() {
      stopJanitor();
      clearInterval(pruneLimiters);
      registry.closeAll(1001, 'relay shutting down');
      provisioning.closeAll(1001, 'relay shutting down');
      // Node closes idle keep-alive connections once, when the close begins; one whose request
      // was in flight then stayed open after its answer until the keep-alive timeout (72 s), and
      // SIGTERM under load ran into main's 10 s deadline (seen in the fault suite). Close each as
      // soon as it goes idle.
      const closeIdle = setInterval(() => app.server.closeIdleConnections(), 100);
      await app.close().finally(() => clearInterval(closeIdle));
      await listener.stop();
      context.acks.stop();
      await database.close();
    },
  };
};
