import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.ts';
import type { Database } from './db/database.ts';
import type { Metrics } from './metrics.ts';
import type { AccountsRepository } from './repositories/accounts.ts';
import type { UsedChallenge } from './repositories/challenges.ts';
import type { DevicesRepository } from './repositories/devices.ts';
import type { EnvelopesRepository, QueueRead, StoredEnvelope } from './repositories/envelopes.ts';
import type { KeysRepository } from './repositories/keys.ts';
import type { EventListener } from './services/events.ts';
import type { AcknowledgementDeletes } from './services/acknowledgements.ts';
import type { MessageSender } from './services/message-sender.ts';
import type { RateLimiter } from './services/rate-limiter.ts';
import type { AuthenticatedDevice, DeviceTokens } from './services/tokens.ts';
import type { ConnectionRegistry } from './ws/connection-registry.ts';
import type { UnauthenticatedSockets } from './ws/unauthenticated-sockets.ts';

/** Everything routes may use, built once per relay instance by buildApp. */
export interface RelayContext {
  readonly config: RelayConfig;
  readonly log: Logger;
  readonly database: Database;
  readonly metrics: Metrics;
  readonly accounts: AccountsRepository;
  readonly devices: DevicesRepository;
  /** A device's authentication key, undefined if there is no such device (shared reads). */
  authKeyOf(accountId: string, deviceId: number): Promise<Buffer | undefined>;
  deviceExists(accountId: string, deviceId: number): Promise<boolean>;
  /**
   * A message socket's login: the device's next connection number, told to every instance;
   * undefined if there is no such device (concurrent logins share a statement).
   */
  announceConnection(accountId: string, deviceId: number): Promise<number | undefined>;
  readonly keys: KeysRepository;
  /** Uses a login challenge up: false if it already was (concurrent logins share a statement). */
  useChallenge(challenge: UsedChallenge): Promise<boolean>;
  readonly envelopes: EnvelopesRepository;
  /** A device's next queued envelopes: concurrent reads share one query (a GroupRead). */
  readQueue(read: QueueRead): Promise<StoredEnvelope[]>;
  readonly acks: AcknowledgementDeletes;
  readonly tokens: DeviceTokens;
  readonly sender: MessageSender;
  readonly registry: ConnectionRegistry;
  readonly listener: EventListener;
  readonly limiters: {
    readonly registration: RateLimiter;
    readonly auth: RateLimiter;
    readonly prekeyFetch: RateLimiter;
    readonly prekeyRequester: RateLimiter;
    readonly prekeyTarget: RateLimiter;
    readonly messages: RateLimiter;
    readonly turn: RateLimiter;
    readonly sendBytes: RateLimiter;
    /** Challenges and token requests, per client address. */
    readonly login: RateLimiter;
  };
  /** Sockets not yet authenticated, per client address (capped). */
  readonly unauthenticated: UnauthenticatedSockets;
  /** Seals and opens login challenges (derived from JWT_SECRET, held in memory only). */
  readonly challengeKey: Buffer;
  /** Also open login challenges (derived from JWT_VERIFY_SECRETS, during a key rotation). */
  readonly challengeVerifyKeys: readonly Buffer[];
  /** The device behind a request's bearer token, or UNAUTHENTICATED. */
  authenticateRequest(request: FastifyRequest): Promise<AuthenticatedDevice>;
}
