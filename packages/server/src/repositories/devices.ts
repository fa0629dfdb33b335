import { and, asc, eq, gt, ne, sql } from 'drizzle-orm';
import {
  MAX_DEVICES_PER_ACCOUNT,
  MAX_DEVICE_ID,
  PRIMARY_DEVICE_ID,
  type AccountId,
  type DeviceId,
  type DeviceInfo,
  type KemPreKey,
  type SignedPreKey,
} from '@privcomm/wire';
import { arrayLiteral } from '../db/array-literal.ts';
import type { Db } from '../db/database.ts';
import { accounts, devices, linkTokens } from '../db/schema.ts';
import { RelayError } from '../errors.ts';
import { EVENTS_CHANNEL, notifyIn } from '../db/events.ts';
import { sha256 } from './accounts.ts';

/** What every new device brings: its registration id, auth key and non-consumable keys. */
export interface NewDeviceKeys {
  registrationId: number;
  authKey: string;
  signedPreKey: SignedPreKey;
  kyberLastResortPreKey: KemPreKey;
}

/** A device, by its account and id. */
export interface DeviceKey {
  readonly accountId: string;
  readonly deviceId: number;
}

const b64 = (value: string): Buffer => Buffer.from(value, 'base64');

export const newDeviceRow = (accountId: string, deviceId: number, keys: NewDeviceKeys) => ({
  accountId,
  deviceId,
  registrationId: keys.registrationId,
  authKey: b64(keys.authKey),
  signedPreKeyId: keys.signedPreKey.keyId,
  signedPreKey: b64(keys.signedPreKey.publicKey),
  signedPreKeySignature: b64(keys.signedPreKey.signature),
  kemLastResortKeyId: keys.kyberLastResortPreKey.keyId,
  kemLastResortKey: b64(keys.kyberLastResortPreKey.publicKey),
  kemLastResortSignature: b64(keys.kyberLastResortPreKey.signature),
});

const isoDay = (value: string | Date): string =>
  typeof value === 'string' ? value : value.toISOString().slice(0, 10);

export const createDevicesRepository = (db: Db) => ({
  /**
   * Each device's authentication key, or undefined where there is no such device, in the order
   * asked: read at every login and (for existence) on every authenticated request, so many are
   * answered by one query (the relay reads through a GroupRead: app.ts), in plain SQL prepared
   * once per connection (the ORM's query building cost more than the query).
   */
  async authKeys(keys: readonly DeviceKey[]): Promise<(Buffer | undefined)[]> {
    const result = await db.$client.query<{ n: string; auth_key: Buffer }>({
      name: 'device-auth-keys',
      text: `SELECT r.n, devices.auth_key
       FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS r(account, device, n)
       JOIN devices ON devices.account_id = r.account AND devices.device_id = r.device`,
      values: [
        arrayLiteral(keys.map((key) => key.accountId)),
        arrayLiteral(keys.map((key) => key.deviceId)),
      ],
    });
    const authKeys: (Buffer | undefined)[] = keys.map(() => undefined);
    for (const row of result.rows) authKeys[Number(row.n) - 1] = row.auth_key;
    return authKeys;
  },

  /**
   * A message socket's login, for each device in the order given: takes the sequence number
   * that orders connections across instances and tells every instance (an event of type
   * `connected`: the newest socket of a device wins, whichever instance it reached, and older
   * ones close with 4409); undefined, and nothing told, where the device no longer exists (a
   * removed device's unexpired tokens must stop working at once). One round trip for many
   * (the relay calls it through a GroupRead: app.ts). `nextval` is in the select list of a
   * subquery kept apart (OFFSET 0), so that it is called once per existing device, after the
   * existence check. Each device is recorded as seen today in the same statement (a login on the
   * socket by signature has no other write; the update writes only once a day per device).
   */
  async announceConnections(keys: readonly DeviceKey[]): Promise<(number | undefined)[]> {
    const result = await db.$client.query<{ n: string; seq: string }>({
      name: 'announce-connections',
      text: `WITH input AS (
         SELECT * FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS r(a, d, n)
       ), seen AS (
         UPDATE devices SET last_seen_on = current_date FROM input
         WHERE devices.account_id = input.a::uuid AND devices.device_id = input.d
           AND devices.last_seen_on < current_date
       )
       SELECT n, seq,
         pg_notify($1, json_build_object('t', 'connected', 'a', a, 'd', d, 's', seq)::text)
       FROM (SELECT input.n, input.a, input.d, nextval('connection_seq') AS seq
             FROM input
             WHERE EXISTS (SELECT 1 FROM devices
                           WHERE account_id = input.a::uuid AND device_id = input.d)
             OFFSET 0) AS connected`,
      values: [
        EVENTS_CHANNEL,
        arrayLiteral(keys.map((key) => key.accountId)),
        arrayLiteral(keys.map((key) => key.deviceId)),
      ],
    });
    const seqs: (number | undefined)[] = keys.map(() => undefined);
    for (const row of result.rows) seqs[Number(row.n) - 1] = Number(row.seq);
    return seqs;
  },

  async list(accountId: AccountId): Promise<DeviceInfo[]> {
    const rows = await db
      .select({
        deviceId: devices.deviceId,
        registrationId: devices.registrationId,
        createdOn: devices.createdOn,
        lastSeenOn: devices.lastSeenOn,
      })
      .from(devices)
      .where(eq(devices.accountId, accountId))
      .orderBy(asc(devices.deviceId));
    return rows.map((row) => ({
      ...row,
      createdOn: isoDay(row.createdOn),
      lastSeenOn: isoDay(row.lastSeenOn),
    }));
  },

  /** The device set a sender must match: (deviceId, registrationId) of every device. */
  async registrations(accountId: AccountId): Promise<Map<number, number>> {
    const rows = await db
      .select({ deviceId: devices.deviceId, registrationId: devices.registrationId })
      .from(devices)
      .where(eq(devices.accountId, accountId));
    return new Map(rows.map((row) => [row.deviceId, row.registrationId]));
  },

  /** Day granularity: at most one write per device per day. */

  async createLinkToken(accountId: AccountId, token: string, expiresAt: Date): Promise<void> {
    await db.insert(linkTokens).values({ tokenHash: sha256(token), accountId, expiresAt });
  },

  /**
   * Adds a device to the account the link token belongs to. The token is consumed, the device
   * id allocated from the account's counter (never reused) and the device limit checked, all in
   * one transaction; any failure leaves the token usable.
   */
  async link(
    token: string,
    keys: NewDeviceKeys,
  ): Promise<{ accountId: AccountId; deviceId: DeviceId }> {
    return db.transaction(async (tx) => {
      const [link] = await tx
        .delete(linkTokens)
        .where(and(eq(linkTokens.tokenHash, sha256(token)), gt(linkTokens.expiresAt, sql`now()`)))
        .returning({ accountId: linkTokens.accountId });
      if (!link) throw new RelayError('LINK_TOKEN_INVALID');
      // Locks the account row, so concurrent links cannot both pass the limit check.
      const [account] = await tx
        .update(accounts)
        .set({ nextDeviceId: sql`${accounts.nextDeviceId} + 1` })
        .where(eq(accounts.id, link.accountId))
        .returning({ deviceId: sql<number>`${accounts.nextDeviceId} - 1` });
      if (!account) throw new RelayError('LINK_TOKEN_INVALID');
      const [count] = await tx
        .select({ n: sql<number>`count(*)::int` })
        .from(devices)
        .where(eq(devices.accountId, link.accountId));
      if ((count?.n ?? 0) >= MAX_DEVICES_PER_ACCOUNT || account.deviceId > MAX_DEVICE_ID) {
        throw new RelayError('DEVICE_LIMIT_REACHED');
      }
      await tx.insert(devices).values(newDeviceRow(link.accountId, account.deviceId, keys));
      return { accountId: link.accountId as AccountId, deviceId: account.deviceId as DeviceId };
    });
  },

  /**
   * Removes a linked device (never the primary); its keys and envelopes cascade. The event that
   * closes its sockets on every instance is sent by the same transaction, so it cannot be lost
   * to a crash in between.
   */
  async remove(accountId: AccountId, deviceId: DeviceId): Promise<boolean> {
    return db.transaction(async (tx) => {
      const deleted = await tx
        .delete(devices)
        .where(
          and(
            eq(devices.accountId, accountId),
            eq(devices.deviceId, deviceId),
            ne(devices.deviceId, PRIMARY_DEVICE_ID),
          ),
        )
        .returning({ deviceId: devices.deviceId });
      if (deleted.length === 0) return false;
      await notifyIn(tx, { t: 'removed', a: accountId, d: deviceId });
      return true;
    });
  },
});

export type DevicesRepository = ReturnType<typeof createDevicesRepository>;
