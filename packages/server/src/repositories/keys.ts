import { and, asc, eq, sql } from 'drizzle-orm';
import type {
  AccountId,
  DeviceBundle,
  DeviceId,
  KeyCounts,
  UploadKeysRequest,
} from '@privcomm/wire';
import type { Db } from '../db/database.ts';
import type { Executor } from '../db/executor.ts';
import { devices, oneTimeKemPreKeys, oneTimePreKeys } from '../db/schema.ts';

const b64 = (value: string): Buffer => Buffer.from(value, 'base64');
const text = (value: Buffer): string => value.toString('base64');

/**
 * Takes one one-time key of a device atomically: the row is locked and deleted in one statement,
 * and SKIP LOCKED lets concurrent fetches take different keys instead of waiting on each other.
 */
const takeOne = async <T>(
  tx: Executor,
  table: typeof oneTimePreKeys | typeof oneTimeKemPreKeys,
  accountId: string,
  deviceId: number,
  map: (row: Record<string, unknown>) => T,
): Promise<T | undefined> => {
  const name = table === oneTimePreKeys ? 'one_time_prekeys' : 'one_time_kem_prekeys';
  const result = await tx.execute(sql`
      DELETE FROM ${sql.identifier(name)}
      WHERE (account_id, device_id, key_id) = (
        SELECT account_id, device_id, key_id FROM ${sql.identifier(name)}
        WHERE account_id = ${accountId} AND device_id = ${deviceId}
        ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING *`);
  const row = result.rows[0];
  return row === undefined ? undefined : map(row);
};

export const createKeysRepository = (db: Db) => ({
  /** Replace semantics: each list given and non-empty replaces all stored keys of its kind. */
  async upload(accountId: AccountId, deviceId: DeviceId, keys: UploadKeysRequest): Promise<void> {
    await db.transaction(async (tx) => {
      const where = (table: typeof oneTimePreKeys | typeof oneTimeKemPreKeys) =>
        and(eq(table.accountId, accountId), eq(table.deviceId, deviceId));
      if (keys.preKeys && keys.preKeys.length > 0) {
        await tx.delete(oneTimePreKeys).where(where(oneTimePreKeys));
        await tx.insert(oneTimePreKeys).values(
          keys.preKeys.map((key) => ({
            accountId,
            deviceId,
            keyId: key.keyId,
            publicKey: b64(key.publicKey),
          })),
        );
      }
      if (keys.kyberPreKeys && keys.kyberPreKeys.length > 0) {
        await tx.delete(oneTimeKemPreKeys).where(where(oneTimeKemPreKeys));
        await tx.insert(oneTimeKemPreKeys).values(
          keys.kyberPreKeys.map((key) => ({
            accountId,
            deviceId,
            keyId: key.keyId,
            publicKey: b64(key.publicKey),
            signature: b64(key.signature),
          })),
        );
      }
      const replaced = {
        ...(keys.signedPreKey && {
          signedPreKeyId: keys.signedPreKey.keyId,
          signedPreKey: b64(keys.signedPreKey.publicKey),
          signedPreKeySignature: b64(keys.signedPreKey.signature),
        }),
        ...(keys.kyberLastResortPreKey && {
          kemLastResortKeyId: keys.kyberLastResortPreKey.keyId,
          kemLastResortKey: b64(keys.kyberLastResortPreKey.publicKey),
          kemLastResortSignature: b64(keys.kyberLastResortPreKey.signature),
        }),
      };
      if (Object.keys(replaced).length > 0) {
        await tx
          .update(devices)
          .set(replaced)
          .where(and(eq(devices.accountId, accountId), eq(devices.deviceId, deviceId)));
      }
    });
  },

  async counts(accountId: AccountId, deviceId: DeviceId): Promise<KeyCounts> {
    const count = async (table: typeof oneTimePreKeys | typeof oneTimeKemPreKeys) => {
      const [row] = await db
        .select({ n: sql<number>`count(*)::int` })
        .from(table)
        .where(and(eq(table.accountId, accountId), eq(table.deviceId, deviceId)));
      return row?.n ?? 0;
    };
    return { preKeys: await count(oneTimePreKeys), kyberPreKeys: await count(oneTimeKemPreKeys) };
  },

  /**
   * Bundles for the given devices (all of the account's when `deviceId` is undefined). Each
   * takes one one-time EC key if any is left and one one-time Kyber key, falling back to the
   * device's last-resort Kyber key, which is never consumed. Given `oneTimeAllowed`, devices
   * not in it (their one-time key budget is spent) get only the signed and last-resort keys.
   */
  async takeBundles(
    accountId: AccountId,
    deviceId: DeviceId | undefined,
    oneTimeAllowed?: ReadonlySet<number>,
  ): Promise<DeviceBundle[]> {
    return db.transaction(async (tx) => {
      const rows = await tx
        .select()
        .from(devices)
        .where(
          deviceId === undefined
            ? eq(devices.accountId, accountId)
            : and(eq(devices.accountId, accountId), eq(devices.deviceId, deviceId)),
        )
        .orderBy(asc(devices.deviceId));
      const bundles: DeviceBundle[] = [];
      for (const device of rows) {
        const allowed = oneTimeAllowed?.has(device.deviceId) ?? true;
        const preKey = allowed
          ? await takeOne(tx, oneTimePreKeys, accountId, device.deviceId, (row) => ({
              keyId: row.key_id as number,
              publicKey: text(row.public_key as Buffer),
            }))
          : undefined;
        const kemPreKey = allowed
          ? await takeOne(tx, oneTimeKemPreKeys, accountId, device.deviceId, (row) => ({
              keyId: row.key_id as number,
              publicKey: text(row.public_key as Buffer),
              signature: text(row.signature as Buffer),
            }))
          : undefined;
        bundles.push({
          deviceId: device.deviceId,
          registrationId: device.registrationId,
          signedPreKey: {
            keyId: device.signedPreKeyId,
            publicKey: text(device.signedPreKey),
            signature: text(device.signedPreKeySignature),
          },
          ...(preKey && { preKey }),
          kyberPreKey: kemPreKey ?? {
            keyId: device.kemLastResortKeyId,
            publicKey: text(device.kemLastResortKey),
            signature: text(device.kemLastResortSignature),
          },
          kyberPreKeyIsLastResort: kemPreKey === undefined,
        });
      }
      return bundles;
    });
  },
});

export type KeysRepository = ReturnType<typeof createKeysRepository>;
