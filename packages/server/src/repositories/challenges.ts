import { and, eq, gt, lte, sql } from 'drizzle-orm';
import type { AccountId, DeviceId } from '@privcomm/wire';
import type { Db } from '../db/database.ts';
import { authChallenges, inviteCodes, linkTokens } from '../db/schema.ts';

export const createChallengesRepository = (db: Db) => ({
  async create(
    accountId: AccountId,
    deviceId: DeviceId,
    nonce: Buffer,
    lifetimeSeconds: number,
  ): Promise<Date> {
    const [row] = await db
      .insert(authChallenges)
      .values({
        nonce,
        accountId,
        deviceId,
        expiresAt: sql`now() + make_interval(secs => ${lifetimeSeconds})`,
      })
      .returning({ expiresAt: authChallenges.expiresAt });
    if (!row) throw new Error('challenge insert returned nothing');
    return row.expiresAt;
  },

  /**
   * Consumes a challenge issued to exactly this device and still valid. One DELETE decides, so
   * of any number of concurrent submissions (on any number of instances) exactly one wins.
   */
  async consume(accountId: AccountId, deviceId: DeviceId, nonce: Buffer): Promise<boolean> {
    const deleted = await db
      .delete(authChallenges)
      .where(
        and(
          eq(authChallenges.nonce, nonce),
          eq(authChallenges.accountId, accountId),
          eq(authChallenges.deviceId, deviceId),
          gt(authChallenges.expiresAt, sql`now()`),
        ),
      )
      .returning({ nonce: authChallenges.nonce });
    return deleted.length > 0;
  },
});

export type ChallengesRepository = ReturnType<typeof createChallengesRepository>;

/** Removes what has expired outside the envelope queue; returns the number of rows removed. */
export const deleteExpiredCredentials = async (db: Db): Promise<number> => {
  const challenges = await db
    .delete(authChallenges)
    .where(lte(authChallenges.expiresAt, sql`now()`))
    .returning({ one: sql`1` });
  const links = await db
    .delete(linkTokens)
    .where(lte(linkTokens.expiresAt, sql`now()`))
    .returning({ one: sql`1` });
  const invites = await db
    .delete(inviteCodes)
    .where(sql`${inviteCodes.expiresAt} <= now() OR ${inviteCodes.usesLeft} <= 0`)
    .returning({ one: sql`1` });
  return challenges.length + links.length + invites.length;
};
