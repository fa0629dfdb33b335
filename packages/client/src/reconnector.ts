import { CLOSE_CODES } from '@privcomm/wire';
import { ClientError } from './errors.ts';
import type { ConnectionStatus } from './events.ts';
import { reasonOf, type ClientLogger } from './logger.ts';

/** The first retry waits about this long; each failure doubles it, up to MAX_BACKOFF_MS. */
export const INITIAL_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 30_000;

/** Refusals that say "later", not "never": retrying them can succeed. */
const TRANSIENT_RELAY_CODES = new Set(['RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL']);

/**
 * How long to wait before attempt `failures + 1`: exponential, with "equal jitter" (half fixed,
 * half random) so that the devices a relay restart dropped do not all come back at once.
 */
export const backoffDelay = (failures: number, random: () => number): number => {
  const cap = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** Math.min(failures, 16));
  return Math.round(cap / 2 + random() * (cap / 2));
};

/** An error of a connection attempt that retrying will not cure, or undefined. */
export const fatalConnectError = (error: unknown): ClientError | undefined => {
  if (!(error instanceof ClientError)) return undefined;
  if (error.code === 'NOT_REGISTERED') return error;
  if (error.code !== 'RELAY_REFUSED') return undefined;
  return TRANSIENT_RELAY_CODES.has(error.relayCode ?? '') ? undefined : error;
};

/** A close that retrying will not cure (the device was removed, another one took over). */
export const fatalClose = (code: number): ClientError | undefined => {
  if (code === CLOSE_CODES.UNAUTHENTICATED)
    return new ClientError(
      'RELAY_REFUSED',
      'the relay closed the connection: this device is no longer accepted (removed, or the account was deleted)',
      'UNAUTHENTICATED',
    );
  if (code === CLOSE_CODES.CONNECTED_ELSEWHERE)
    return new ClientError(
      'CONNECTED_ELSEWHERE',
      'another client connected with this device; only one may be connected at a time',
    );
  return undefined;
};

export interface ReconnectorDeps {
  /**
   * Opens and authenticates the message socket; `onLost` is called once when it closes. Throws
   * a ClientError when the attempt fails.
   */
  connect(onLost: (code: number, reason: string) => void): Promise<void>;
  /** Runs after each connection: what was held back while offline goes out (best effort). */
  resume(): Promise<void>;
  /** Handles what was received, closes the socket. */
  disconnect(): Promise<void>;
  sleep(ms: number): Promise<void>;
  /** A number in [0, 1), for the jitter. */
  random(): number;
  onStatus(status: ConnectionStatus): void;
  readonly logger: ClientLogger;
}

/**
 * Keeps the message socket connected: reconnects with backoff after every loss, resumes after
 * every connection, and stops for good only when told to or when the relay refuses this device.
 */
export class Reconnector {
  private stopping = false;
  private wake: (() => void) | undefined;
  private lost: ((event: { code: number; reason: string }) => void) | undefined;
  private statusValue: ConnectionStatus = { state: 'offline' };

  constructor(private readonly deps: ReconnectorDeps) {}

  get status(): ConnectionStatus {
    return this.statusValue;
  }

  private set(status: ConnectionStatus): void {
    this.statusValue = status;
    this.deps.onStatus(status);
  }

  /** Waits `ms`, or less if `stop` is called meanwhile. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      void this.deps.sleep(ms).then(resolve);
    });
  }

  /**
   * Runs until `stop` (resolves) or until the relay refuses this device for good (rejects with
   * that ClientError, also reported as the 'stopped' state).
   */
  async run(): Promise<void> {
    this.stopping = false;
    let failures = 0;
    while (!this.stopping) {
      this.set({ state: 'connecting' });
      const lost = new Promise<{ code: number; reason: string }>((resolve) => {
        this.lost = resolve;
      });
      try {
        await this.deps.connect((code, reason) => this.lost?.({ code, reason }));
      } catch (error) {
        if (this.stopping) break;
        const fatal = fatalConnectError(error);
        if (fatal) return this.stopForGood(fatal);
        this.deps.logger.log('info', 'connection attempt failed', reasonOf(error));
        const retryInMs = backoffDelay(failures, () => this.deps.random());
        failures += 1;
        this.set({
          state: 'offline',
          retryInMs,
          ...(error instanceof ClientError ? { error } : {}),
        });
        await this.pause(retryInMs);
        continue;
      }
      if (this.stopping) {
        // `stop` came while this attempt was under way: close what it opened.
        await this.deps.disconnect();
        break;
      }
      failures = 0;
      this.set({ state: 'online' });
      await this.deps.resume().catch((error: unknown) => {
        // Whatever is left (the outbox, the receipts) waits for the next connection.
        this.deps.logger.log('warn', 'resume failed', reasonOf(error));
      });
      const event = await lost;
      if (this.stopping) break;
      const fatal = fatalClose(event.code);
      if (fatal) return this.stopForGood(fatal);
      this.deps.logger.log('info', 'connection lost');
      const retryInMs = backoffDelay(failures, () => this.deps.random());
      failures += 1;
      this.set({
        state: 'offline',
        retryInMs,
        error: new ClientError('RELAY_UNREACHABLE', `the connection was lost (${event.code})`),
      });
      await this.pause(retryInMs);
    }
    this.set({ state: 'offline' });
  }

  private stopForGood(error: ClientError): never {
    this.deps.logger.log('error', 'connection stopped', reasonOf(error));
    this.set({ state: 'stopped', error });
    throw error;
  }

  /** Ends the wait before the next attempt now (someone asked to retry at once). */
  retryNow(): void {
    this.wake?.();
  }

  /** Ends `run`: handles what was received, closes the socket, stops retrying. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.deps.disconnect();
    this.lost?.({ code: CLOSE_CODES.NORMAL, reason: 'stopped' });
  }
}
