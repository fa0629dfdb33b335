import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import {
  MAX_CONTENT_BYTES,
  MAX_ONLINE_CONTENT_BYTES,
  type AccountId,
  type SendMessagesRequest,
} from '@privcomm/wire';
import { FOREIGN_KEY_VIOLATION, sqlState } from '../db/executor.ts';
import { RelayError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import {
  queueFull,
  type DeviceQueue,
  type EnvelopesRepository,
  type NewEnvelope,
  type QueueCaps,
} from '../repositories/envelopes.ts';
import { notifyQuery } from './events.ts';
import type { GroupCommit } from './group-commit.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { AuthenticatedDevice } from './tokens.ts';

const sorted = (values: Iterable<number>): number[] => [...values].sort((a, b) => a - b);

/**
 * The one place that decides what happens to a send request: check the device set, then either
 * store every envelope durably before answering, or (online) hand them to whichever instance
 * holds the sockets and store nothing. The relay learns the sender only for the duration of the
 * request (for rate limiting); no sender is stored with an envelope.
 */
export class MessageSender {
  constructor(
    private readonly pool: pg.Pool,
    /** The recipient's devices with what each has queued: one query for both checks. */
    private readonly queues: Pick<EnvelopesRepository, 'devicesWithQueues'>,
    private readonly caps: QueueCaps,
    private readonly writer: GroupCommit<NewEnvelope>,
    private readonly limiter: RateLimiter,
    private readonly metrics: Metrics,
    /** Bytes of stored ciphertext per sending account (SEND_BYTES_PER_HOUR). */
    private readonly byteBudget: RateLimiter,
  ) {}

  async send(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    request: SendMessagesRequest,
  ): Promise<{ stored: number }> {
    this.limiter.take(`${sender.accountId}.${sender.deviceId}>${recipient}`);
    const online = request.online === true;
    const contents = request.messages.map((message) => {
      const content = Buffer.from(message.content, 'base64');
      const limit = online ? MAX_ONLINE_CONTENT_BYTES : MAX_CONTENT_BYTES;
      if (content.length > limit) {
        throw new RelayError(
          'CONTENT_TOO_LARGE',
          `device ${message.deviceId}: ${content.length} bytes`,
        );
      }
      return content;
    });
    const ids = request.messages.map((message) => message.deviceId);
    if (new Set(ids).size !== ids.length) {
      throw new RelayError('VALIDATION_FAILED', 'a device appears twice in messages');
    }
    for (let attempt = 0; ; attempt += 1) {
      const { devices, senderExists } = await this.queues.devicesWithQueues(recipient, sender);
      // A removed device's socket is closed at once, but a send may already be on its way.
      if (!senderExists) throw new RelayError('UNAUTHENTICATED');
      this.checkDeviceSet(sender, recipient, request, devices);
      if (online) return this.relayOnline(recipient, request, contents);
      const rows = request.messages.map((message, index) => ({
        accountId: recipient,
        deviceId: message.deviceId,
        type: message.type,
        content: contents[index] as Buffer,
        urgent: request.urgent === true,
      }));
      // A full recipient queue refuses before the sender's budget is spent. This look uses the
      // counts read with the device set; the writer checks again, exactly, inside its transaction.
      this.checkRoom(rows, devices);
      if (attempt === 0) {
        const bytes = rows.reduce((sum, row) => sum + row.content.length, 0);
        this.byteBudget.take(sender.accountId, bytes);
      }
      try {
        await this.writer.submit(rows);
        this.metrics.envelopesStored.inc(rows.length);
        return { stored: rows.length };
      } catch (error) {
        // A device was removed between the check and the insert: check again, which now
        // answers 409 (or succeeds if the request happened to match the new set).
        if (sqlState(error) !== FOREIGN_KEY_VIOLATION || attempt > 0) throw error;
      }
    }
  }

  /** 410 for re-registered devices first, then 409 for missing or extra ones; nothing stored. */
  private checkDeviceSet(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    request: SendMessagesRequest,
    devices: ReadonlyMap<number, DeviceQueue>,
  ): void {
    const registrations = new Map(
      [...devices].map(([deviceId, device]) => [deviceId, device.registrationId]),
    );
    if (registrations.size === 0) throw new RelayError('ACCOUNT_NOT_FOUND');
    // Messages to one's own account go to the other devices (sync), never back to the sender.
    if (recipient === sender.accountId) registrations.delete(sender.deviceId);
    const requested = new Map(request.messages.map((m) => [m.deviceId, m.registrationId]));
    const stale = [...requested].filter(
      ([deviceId, registrationId]) =>
        registrations.has(deviceId) && registrations.get(deviceId) !== registrationId,
    );
    if (stale.length > 0) {
      throw new RelayError('STALE_DEVICES', undefined, {
        staleDevices: sorted(stale.map(([deviceId]) => deviceId)),
      });
    }
    const missing = [...registrations.keys()].filter((deviceId) => !requested.has(deviceId));
    const extra = [...requested.keys()].filter((deviceId) => !registrations.has(deviceId));
    if (missing.length > 0 || extra.length > 0) {
      throw new RelayError('MISMATCHED_DEVICES', undefined, {
        missingDevices: sorted(missing),
        extraDevices: sorted(extra),
      });
    }
  }

  /** QUEUE_FULL if a device's queue, as last counted, has no room for its envelope. */
  private checkRoom(rows: readonly NewEnvelope[], devices: ReadonlyMap<number, DeviceQueue>): void {
    for (const row of rows) {
      const queue = devices.get(row.deviceId);
      if (!queue) continue;
      if (
        queue.envelopes + 1 > this.caps.maxEnvelopes ||
        queue.bytes + row.content.length > this.caps.maxBytes
      ) {
        throw queueFull();
      }
    }
  }

  private async relayOnline(
    recipient: AccountId,
    request: SendMessagesRequest,
    contents: Buffer[],
  ): Promise<{ stored: number }> {
    await Promise.all(
      request.messages.map((message, index) =>
        this.pool.query(
          notifyQuery({
            t: 'online',
            a: recipient,
            d: message.deviceId,
            e: {
              id: randomUUID(),
              type: message.type,
              content: (contents[index] as Buffer).toString('base64'),
              urgent: request.urgent === true,
              online: true,
            },
          }),
        ),
      ),
    );
    return { stored: 0 };
  }
}
