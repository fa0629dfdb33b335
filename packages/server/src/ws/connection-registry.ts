import type { Logger } from 'pino';
import { CLOSE_CODES, deviceAddress, type AccountId, type DeviceId } from '@privcomm/wire';
import type { StoredEnvelope } from '../repositories/envelopes.ts';
import type { DirectTarget } from '../services/deliver-first.ts';
import type { EventHandler, RelayEvent } from '../services/events.ts';
import { safeError } from '../logger.ts';

/** How long an announcement from another instance is remembered (see `announced`). */
const ANNOUNCEMENT_MEMORY_MS = 60_000;
/** A failed resync (`onResync`) is tried again after this, then twice as long, up to the last. */
const RESYNC_FIRST_RETRY_MS = 500;
const RESYNC_LAST_RETRY_MS = 8_000;

/** What the registry needs of a live socket (and deliver-first, services/deliver-first.ts). */
export interface DeviceSession extends DirectTarget {
  readonly accountId: AccountId;
  readonly deviceId: DeviceId;
  /** Database-issued order of authentication: the larger one is the newer connection. */
  readonly connectionSeq: number;
  /** Reads the queue again; not needed if everything up to queue position `upTo` was sent. */
  wake(upTo?: number): void;
  /** An insert with envelopes for the device is under way here: `offer` follows, once. */
  expectOffer(): void;
  /** Envelopes this instance just committed for the device, in queue order (none if it failed). */
  offer(envelopes: readonly StoredEnvelope[]): void;
  deliverOnline(event: Extract<RelayEvent, { t: 'online' }>['e']): void;
  close(code: number, reason: string): void;
  /** Closes the session if it overran its deadlines; called about once a second. */
  sweep(now: number): void;
}

/**
 * The sockets this instance holds, one per device, and the reactions to events from every
 * instance: wake a queue, hand over an online envelope, close a replaced or removed device.
 */
export class ConnectionRegistry implements EventHandler {
  private readonly sessions = new Map<string, DeviceSession>();
  /**
   * The newest connection seq announced by any instance per device, kept briefly: a local socket
   * still between its announcement and `add` must learn that a newer one already won.
   */
  private readonly announced = new Map<string, { seq: number; at: number }>();
  private readonly sweeper: NodeJS.Timeout;
  private resyncRetry: NodeJS.Timeout | undefined;
  /** Which resync is current: a later outage's resync supersedes an earlier one's retries. */
  private resyncGeneration = 0;
  private closed = false;

  constructor(
    private readonly log: Logger,
    /** Re-checks after a listener outage which local devices still exist. */
    private readonly existing: (sessions: DeviceSession[]) => Promise<Set<DeviceSession>>,
  ) {
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const session of this.sessions.values()) session.sweep(now);
      for (const [address, { at }] of this.announced) {
        if (now - at > ANNOUNCEMENT_MEMORY_MS) this.announced.delete(address);
      }
    }, 1_000);
    this.sweeper.unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Adds a session; an older local session of the same device is closed with 4409. */
  add(session: DeviceSession): void {
    const address = deviceAddress(session.accountId, session.deviceId);
    const previous = this.sessions.get(address);
    const newest = Math.max(previous?.connectionSeq ?? 0, this.announced.get(address)?.seq ?? 0);
    if (newest > session.connectionSeq) {
      session.close(CLOSE_CODES.CONNECTED_ELSEWHERE, 'connected elsewhere');
      return;
    }
    this.sessions.set(address, session);
    previous?.close(CLOSE_CODES.CONNECTED_ELSEWHERE, 'connected elsewhere');
  }

  /** The device's socket on this instance, if it has one. */
  local(accountId: string, deviceId: number): DeviceSession | undefined {
    return this.sessions.get(`${accountId}.${deviceId}`);
  }

  remove(session: DeviceSession): void {
    const address = deviceAddress(session.accountId, session.deviceId);
    if (this.sessions.get(address) === session) this.sessions.delete(address);
  }

  onEvent(event: RelayEvent): void {
    if (event.t === 'provision') return; // for the provisioning sockets, not device sessions
    if (event.t === 'removed') {
      for (const session of [...this.sessions.values()]) {
        if (session.accountId === event.a && (event.d === 0 || session.deviceId === event.d)) {
          session.close(CLOSE_CODES.UNAUTHENTICATED, 'device removed');
        }
      }
      return;
    }
    const address = `${event.a}.${event.d}`;
    if (event.t === 'connected') {
      const known = this.announced.get(address);
      if (!known || known.seq < event.s)
        this.announced.set(address, { seq: event.s, at: Date.now() });
    }
    const session = this.sessions.get(address);
    if (!session) return;
    if (event.t === 'queued') session.wake(event.s);
    else if (event.t === 'online') session.deliverOnline(event.e);
    else if (event.t === 'connected' && event.s > session.connectionSeq) {
      session.close(CLOSE_CODES.CONNECTED_ELSEWHERE, 'connected elsewhere');
    }
  }

  /**
   * Hands envelopes this instance has just committed to the local sockets of their devices, which
   * then need not read them back (the NOTIFY that follows finds them sent). Sockets elsewhere
   * learn of them from that NOTIFY, as before.
   */
  offer(
    committed: ReadonlyMap<string, readonly StoredEnvelope[]>,
    expected: readonly DeviceSession[] = [],
  ): void {
    const told = new Set<DeviceSession>();
    // One session's failure must not keep the others from their offer (each expects exactly one),
    // nor may one that closed meanwhile: its address then throws, so it is read inside the try.
    const offer = (session: DeviceSession, envelopes: () => readonly StoredEnvelope[]): void => {
      told.add(session);
      try {
        session.offer(envelopes());
      } catch (error) {
        this.log.warn({ err: safeError(error) }, 'committed envelopes not handed over');
      }
    };
    for (const session of expected) {
      offer(session, () => committed.get(`${session.accountId}.${session.deviceId}`) ?? []);
    }
    for (const [address, envelopes] of committed) {
      const session = this.sessions.get(address);
      if (session && !told.has(session)) offer(session, () => envelopes);
    }
  }

  /**
   * Before an insert: the local sessions of these device addresses expect its offer, so that the
   * insert's NOTIFY, if it comes first, does not make them read what the offer brings. Each
   * returned session must get exactly one `offer` call (empty if the insert failed).
   */
  expect(addresses: Iterable<string>): DeviceSession[] {
    const sessions: DeviceSession[] = [];
    for (const address of addresses) {
      const session = this.sessions.get(address);
      if (!session) continue;
      session.expectOffer();
      sessions.push(session);
    }
    return sessions;
  }

  /**
   * The listener was away, so the wake-ups of that time were lost: every local socket whose
   * device still exists reads its queue again, and those of devices removed meanwhile close. The
   * check is a query; if it fails (the database only half back), it is tried again until it
   * succeeds, on the sockets open by then. Until 2026-12-06 a failed check was only logged, and
   * a socket whose wake-up was lost waited for its next message.
   */
  onResync(): void {
    this.resyncGeneration += 1;
    clearTimeout(this.resyncRetry);
    this.resync(this.resyncGeneration, RESYNC_FIRST_RETRY_MS);
  }

  private resync(generation: number, retryMs: number): void {
    const sessions = [...this.sessions.values()];
    const current = () => generation === this.resyncGeneration && !this.closed;
    this.existing(sessions).then(
      (alive) => {
        for (const session of sessions) {
          // One session that fails must not keep the others from their wake-up (nor, thrown in
          // this callback, become a rejection that nobody handles).
          try {
            if (alive.has(session)) session.wake();
            else session.close(CLOSE_CODES.UNAUTHENTICATED, 'device removed');
          } catch (error) {
            this.log.warn({ err: safeError(error) }, 'a socket could not be woken after a resync');
          }
        }
      },
      (error: unknown) => {
        if (!current()) return; // a newer resync has taken over, or the relay is stopping
        this.log.warn({ err: safeError(error) }, 'resync after listener outage failed; retrying');
        this.resyncRetry = setTimeout(
          () => this.resync(generation, Math.min(retryMs * 2, RESYNC_LAST_RETRY_MS)),
          retryMs,
        );
        this.resyncRetry.unref();
      },
    );
  }

  /** Closes every socket (shutdown): clients reconnect, envelopes wait in the database. */
  closeAll(code: number, reason: string): void {
    this.closed = true;
    clearInterval(this.sweeper);
    clearTimeout(this.resyncRetry);
    for (const session of [...this.sessions.values()]) session.close(code, reason);
  }
}
