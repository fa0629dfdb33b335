import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type pg from 'pg';
import {
  AT_REST_SHARE_OVERHEAD_BYTES,
  MAX_CONTENT_BYTES,
  MAX_MULTI_RECIPIENT_ACCOUNTS,
  MAX_MULTI_RECIPIENT_BYTES,
  MAX_ONLINE_CONTENT_BYTES,
  SEALED_SENDER_V2_AT_REST,
  type AccountId,
  type MismatchedAccount,
  type OutgoingMessage,
  type SendMessagesRequest,
  type SendMultiRecipientRequest,
} from '@privcomm/wire';
import { decodeCanonicalBase64 } from '../canonical-base64.ts';
import { FOREIGN_KEY_VIOLATION, sqlState } from '../db/executor.ts';
import { RelayError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import {
  queueFull,
  type DeviceQueue,
  type DeviceSet,
  type DeviceSetRequest,
  type EnvelopesRepository,
  type NewEnvelope,
  type QueueCaps,
} from '../repositories/envelopes.ts';
import { atRestSealer } from './at-rest-share.ts';
import type { DeliverFirst } from './deliver-first.ts';
import { notifyQuery } from './events.ts';
import { parseMultiRecipientMessage, type MultiRecipientAccount } from './multi-recipient.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { AuthenticatedDevice } from './tokens.ts';

const sorted = (values: Iterable<number>): number[] => [...values].sort((a, b) => a - b);

/**
 * Shares sealed between two turns of the event loop: sealing one takes a few hundred
 * microseconds, and an upload to 6,000 devices must not hold up the relay's other requests.
 */
const SEALS_PER_TURN = 100;

/** How a request's devices differ from an account's: re-registered, missing and extra ones. */
interface DeviceSetDifference {
  readonly staleDevices: number[];
  readonly missingDevices: number[];
  readonly extraDevices: number[];
}

/**
 * Compares the requested devices (id → registration id) with the account's. Messages to one's
 * own account go to the other devices (sync), never back to the sender: pass `exclude`.
 */
const deviceSetDifference = (
  devices: ReadonlyMap<number, DeviceQueue>,
  requested: ReadonlyMap<number, number>,
  exclude?: number,
): DeviceSetDifference => {
  const registrations = new Map(
    [...devices].map(([deviceId, device]) => [deviceId, device.registrationId]),
  );
  if (exclude !== undefined) registrations.delete(exclude);
  const stale = [...requested].filter(
    ([deviceId, registrationId]) =>
      registrations.has(deviceId) && registrations.get(deviceId) !== registrationId,
  );
  return {
    staleDevices: sorted(stale.map(([deviceId]) => deviceId)),
    missingDevices: sorted([...registrations.keys()].filter((id) => !requested.has(id))),
    extraDevices: sorted([...requested.keys()].filter((id) => !registrations.has(id))),
  };
};

/**
 * Whether the requested devices are exactly the account's (less `exclude`) with their current
 * registration ids: every send asks, almost every answer is yes, and this one allocates nothing.
 */
const sameDeviceSet = (
  devices: ReadonlyMap<number, DeviceQueue>,
  requested: readonly { deviceId: number; registrationId: number }[],
  exclude?: number,
): boolean => {
  const expected = devices.size - (exclude !== undefined && devices.has(exclude) ? 1 : 0);
  if (requested.length !== expected) return false;
  for (const { deviceId, registrationId } of requested) {
    if (deviceId === exclude || devices.get(deviceId)?.registrationId !== registrationId) {
      return false;
    }
  }
  return true;
};

const differs = (difference: DeviceSetDifference): boolean =>
  difference.staleDevices.length > 0 ||
  difference.missingDevices.length > 0 ||
  difference.extraDevices.length > 0;

/**
 * The one place that decides what happens to a send request: check the device set, then either
 * store every envelope durably before answering, or (online) hand them to whichever instance
 * holds the sockets and store nothing. The relay learns the sender only for the duration of the
 * request (for rate limiting); no sender is stored with an envelope.
 */
/** What a send says of each message besides its content (which comes as base64 or bytes). */
type OutgoingFields = Omit<OutgoingMessage, 'content'>;
/** A send request whose contents are carried apart from it. */
type SendFields = Omit<SendMessagesRequest, 'messages'> & { messages: readonly OutgoingFields[] };

export class MessageSender {
  constructor(
    private readonly pool: pg.Pool,
    /**
     * The recipient's devices with what each has queued, and whether the sender still exists:
     * one lookup for all three checks (in the relay, many sends share one query: a GroupRead).
     */
    private readonly deviceSet: (request: DeviceSetRequest) => Promise<DeviceSet>,
    /** The same for the many accounts of a multi-recipient upload, in one query. */
    private readonly queues: Pick<EnvelopesRepository, 'devicesOfAccounts'>,
    private readonly caps: QueueCaps,
    /** Delivers first where it can, and otherwise writes (in each device's order). */
    private readonly delivery: Pick<DeliverFirst, 'makeDurable'>,
    private readonly limiter: RateLimiter,
    private readonly metrics: Metrics,
    /**
     * Bytes per sending account (SEND_BYTES_PER_HOUR): the stored ciphertext of a single send,
     * the uploaded bytes of a multi-recipient one.
     */
    private readonly byteBudget: RateLimiter,
  ) {}

  async send(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    request: SendMessagesRequest,
  ): Promise<{ stored: number }> {
    const contents = request.messages.map((message, index) => {
      const content = decodeCanonicalBase64(message.content);
      if (content !== undefined) return content;
      throw new RelayError(
        'VALIDATION_FAILED',
        `messages[${index}].content is not canonical padded base64`,
      );
    });
    const base64 = request.messages.map((message) => message.content);
    return this.sendContents(sender, recipient, request, contents, base64);
  }

  /** A send whose contents came as bytes (a binary `message.send`); the same rules. */
  sendBytes(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    request: SendFields,
    contents: readonly Buffer[],
  ): Promise<{ stored: number }> {
    return this.sendContents(sender, recipient, request, contents);
  }

  /**
   * @param base64 the contents as the sender spelled them, when they came so: canonical (checked
   * as they were decoded), and handed on as they are to sockets of JSON frames.
   */
  private async sendContents(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    request: SendFields,
    contents: readonly Buffer[],
    base64?: readonly string[],
  ): Promise<{ stored: number }> {
    this.limiter.take(`${sender.accountId}.${sender.deviceId}>${recipient}`);
    const online = request.online === true;
    const limit = online ? MAX_ONLINE_CONTENT_BYTES : MAX_CONTENT_BYTES;
    contents.forEach((content, index) => {
      if (content.length <= limit) return;
      const deviceId = request.messages[index]?.deviceId;
      throw new RelayError('CONTENT_TOO_LARGE', `device ${deviceId}: ${content.length} bytes`);
    });
    const ids = request.messages.map((message) => message.deviceId);
    if (new Set(ids).size !== ids.length) {
      throw new RelayError('VALIDATION_FAILED', 'a device appears twice in messages');
    }
    for (let attempt = 0; ; attempt += 1) {
      const { devices, senderExists } = await this.deviceSet({ recipient, sender });
      // A removed device's socket is closed at once, but a send may already be on its way.
      if (!senderExists) throw new RelayError('UNAUTHENTICATED');
      this.checkDeviceSet(sender, recipient, request.messages, devices);
      const rows = request.messages.map((message, index) => ({
        id: randomUUID(),
        accountId: recipient,
        deviceId: message.deviceId,
        type: message.type,
        content: contents[index] as Buffer,
        base64: base64?.[index],
        urgent: request.urgent === true,
      }));
      if (online) return this.relayOnlineRows(rows);
      // A full recipient queue refuses before the sender's budget is spent. This look uses the
      // counts read with the device set; the writer checks again, exactly, inside its transaction.
      this.checkRoom(rows, devices);
      const cost = rows.reduce((sum, row) => sum + row.content.length, 0);
      const stored = await this.store(sender, rows, attempt, cost, (row) =>
        devices.get(row.deviceId),
      );
      if (stored) return stored;
    }
  }

  /**
   * Spends `cost` of the sender's byte budget (once, on the first attempt) and makes the rows
   * durable: acknowledged by their devices (delivered first), or committed. Undefined when a
   * device was removed between the check and the insert: the caller checks again, which now
   * answers 409 (or succeeds if the request happened to match the new set).
   */
  private async store(
    sender: AuthenticatedDevice,
    rows: readonly NewEnvelope[],
    attempt: number,
    cost: number,
    queueOf: (row: NewEnvelope) => DeviceQueue | undefined,
  ): Promise<{ stored: number } | undefined> {
    if (attempt === 0) this.byteBudget.take(sender.accountId, cost);
    try {
      await this.delivery.makeDurable(rows, queueOf);
      this.metrics.envelopesStored.inc(rows.length);
      return { stored: rows.length };
    } catch (error) {
      if (sqlState(error) !== FOREIGN_KEY_VIOLATION || attempt > 0) throw error;
      return undefined;
    }
  }

  /** 410 for re-registered devices first, then 409 for missing or extra ones; nothing stored. */
  private checkDeviceSet(
    sender: AuthenticatedDevice,
    recipient: AccountId,
    messages: readonly OutgoingFields[],
    devices: ReadonlyMap<number, DeviceQueue>,
  ): void {
    if (devices.size === 0) throw new RelayError('ACCOUNT_NOT_FOUND');
    const exclude = recipient === sender.accountId ? sender.deviceId : undefined;
    if (sameDeviceSet(devices, messages, exclude)) return;
    const difference = deviceSetDifference(
      devices,
      new Map(messages.map((m) => [m.deviceId, m.registrationId])),
      exclude,
    );
    if (difference.staleDevices.length > 0) {
      throw new RelayError('STALE_DEVICES', undefined, { staleDevices: difference.staleDevices });
    }
    if (differs(difference)) {
      throw new RelayError('MISMATCHED_DEVICES', undefined, {
        missingDevices: difference.missingDevices,
        extraDevices: difference.extraDevices,
      });
    }
  }

  /**
   * One multi-recipient sealed message (a group message) for many accounts: parsed, checked
   * account by account exactly as a single send is (404 naming the unknown accounts; otherwise
   * 410 if any device is stale, else 409, listing every account whose device set differs), then
   * every device's share sealed to its account's identity key (at-rest-share.ts) and stored as
   * an ordinary envelope, in one transaction: all or nothing. Nothing links the envelopes of one
   * upload beyond their arrival: no upload or group id, and no bytes in common. The sender's byte
   * budget is charged what it uploaded, once: what it costs the recipients is bounded by their
   * queue caps.
   */
  async sendMulti(
    sender: AuthenticatedDevice,
    request: SendMultiRecipientRequest,
  ): Promise<{ stored: number }> {
    const data = Buffer.from(request.content, 'base64');
    if (data.length > MAX_MULTI_RECIPIENT_BYTES) {
      throw new RelayError(
        'CONTENT_TOO_LARGE',
        `${data.length} bytes; a multi-recipient message takes at most ${MAX_MULTI_RECIPIENT_BYTES}`,
      );
    }
    const recipients = parseMultiRecipientMessage(data, MAX_MULTI_RECIPIENT_ACCOUNTS);
    if (recipients.some((recipient) => recipient.accountId === sender.accountId)) {
      // Copies to one's own devices go pairwise, later (SECURITY.md, finding 5): in the same
      // upload they would be tied to the message by time.
      throw new RelayError(
        'VALIDATION_FAILED',
        "the sender's own account cannot be a recipient; send copies to your devices with PUT /v1/messages/{accountId}",
      );
    }
    const online = request.online === true;
    const limit = online ? MAX_ONLINE_CONTENT_BYTES : MAX_CONTENT_BYTES;
    // Every share holds the shared part: they are all about the same size. What is stored (or
    // handed on) is the share sealed at rest.
    const largest =
      Math.max(...recipients.map((recipient) => recipient.share.length)) +
      AT_REST_SHARE_OVERHEAD_BYTES;
    if (largest > limit) {
      throw new RelayError(
        'CONTENT_TOO_LARGE',
        `each device's share is ${largest} bytes, sealed at rest`,
      );
    }
    for (const recipient of recipients) {
      this.limiter.take(`${sender.accountId}.${sender.deviceId}>${recipient.accountId}`);
    }
    for (let attempt = 0; ; attempt += 1) {
      const { accounts, identityKeys, senderExists } = await this.queues.devicesOfAccounts(
        recipients.map((recipient) => recipient.accountId),
        sender,
      );
      if (!senderExists) throw new RelayError('UNAUTHENTICATED');
      this.checkDeviceSets(recipients, accounts);
      if (!online) {
        // Both refuse before the relay spends its time sealing; the budget is taken (on the
        // first attempt) when the rows are stored.
        this.checkRoomOfAccounts(recipients, accounts);
        if (attempt === 0) this.byteBudget.check(sender.accountId, data.length);
      }
      const rows = await this.sealedRows(recipients, identityKeys, request.urgent === true);
      if (online) return this.relayOnlineRows(rows);
      const stored = await this.store(sender, rows, attempt, data.length, (row) =>
        accounts.get(row.accountId)?.get(row.deviceId),
      );
      if (stored) return stored;
    }
  }

  /**
   * One row per recipient device, each holding its account's share sealed at rest under a fresh
   * ephemeral key (at-rest-share.ts), SEALS_PER_TURN at a time between turns of the event loop.
   */
  private async sealedRows(
    recipients: readonly MultiRecipientAccount[],
    identityKeys: ReadonlyMap<string, Buffer>,
    urgent: boolean,
  ): Promise<NewEnvelope[]> {
    const rows: NewEnvelope[] = [];
    for (const recipient of recipients) {
      const identityKey = identityKeys.get(recipient.accountId);
      // checkDeviceSets has answered 404 for an account without one.
      if (identityKey === undefined) throw new Error('no identity key for a recipient account');
      const seal = atRestSealer(recipient.accountId, identityKey);
      for (const device of recipient.devices) {
        if (rows.length > 0 && rows.length % SEALS_PER_TURN === 0) await nextTurn();
        rows.push({
          id: randomUUID(),
          accountId: recipient.accountId,
          deviceId: device.deviceId,
          type: SEALED_SENDER_V2_AT_REST,
          content: seal(recipient.share),
          urgent,
        });
      }
    }
    return rows;
  }

  /** The single send's checks, for every recipient account of a multi upload at once. */
  private checkDeviceSets(
    recipients: readonly MultiRecipientAccount[],
    accounts: ReadonlyMap<string, ReadonlyMap<number, DeviceQueue>>,
  ): void {
    const unknown = recipients.filter((recipient) => !accounts.has(recipient.accountId));
    if (unknown.length > 0) {
      throw new RelayError('ACCOUNT_NOT_FOUND', `${unknown.length} of the recipient accounts`, {
        unknownAccounts: unknown.map((recipient) => recipient.accountId),
      });
    }
    const mismatched: MismatchedAccount[] = [];
    for (const recipient of recipients) {
      const difference = deviceSetDifference(
        accounts.get(recipient.accountId) as ReadonlyMap<number, DeviceQueue>,
        new Map(recipient.devices.map((device) => [device.deviceId, device.registrationId])),
      );
      if (differs(difference)) {
        mismatched.push({ accountId: recipient.accountId as AccountId, ...difference });
      }
    }
    if (mismatched.length === 0) return;
    const stale = mismatched.some((account) => account.staleDevices.length > 0);
    throw new RelayError(stale ? 'STALE_DEVICES' : 'MISMATCHED_DEVICES', undefined, {
      accounts: mismatched,
    });
  }

  /** checkRoom across accounts, naming every recipient account with a full device queue. */
  private checkRoomOfAccounts(
    recipients: readonly MultiRecipientAccount[],
    accounts: ReadonlyMap<string, ReadonlyMap<number, DeviceQueue>>,
  ): void {
    const full = new Set<string>();
    for (const recipient of recipients) {
      // Each device stores the share sealed at rest.
      const bytes = recipient.share.length + AT_REST_SHARE_OVERHEAD_BYTES;
      for (const device of recipient.devices) {
        const queue = accounts.get(recipient.accountId)?.get(device.deviceId);
        if (queue && !this.hasRoom(queue, bytes)) full.add(recipient.accountId);
      }
    }
    if (full.size > 0) {
      throw new RelayError('QUEUE_FULL', undefined, {
        ...queueFull().extra,
        fullAccounts: [...full],
      });
    }
  }

  /** QUEUE_FULL if a device's queue, as last counted, has no room for its envelope. */
  private checkRoom(rows: readonly NewEnvelope[], devices: ReadonlyMap<number, DeviceQueue>): void {
    for (const row of rows) {
      const queue = devices.get(row.deviceId);
      if (queue && !this.hasRoom(queue, row.content.length)) throw queueFull();
    }
  }

  /** Whether a queue, as last counted, takes one more envelope of `bytes`. */
  private hasRoom(queue: DeviceQueue, bytes: number): boolean {
    return (
      queue.envelopes + 1 <= this.caps.maxEnvelopes && queue.bytes + bytes <= this.caps.maxBytes
    );
  }

  /** Online rows of any accounts: handed to whichever instance holds the sockets, not stored. */
  private async relayOnlineRows(rows: readonly NewEnvelope[]): Promise<{ stored: number }> {
    await Promise.all(
      rows.map((row) =>
        this.pool.query(
          notifyQuery({
            t: 'online',
            a: row.accountId,
            d: row.deviceId,
            e: {
              id: randomUUID(),
              type: row.type,
              content: row.base64 ?? row.content.toString('base64'),
              urgent: row.urgent,
              online: true,
            },
          }),
        ),
      ),
    );
    return { stored: 0 };
  }
}
