import { lte, sql } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { inviteCodes, linkTokens, usedChallenges } from '../db/schema.ts';

export const createChallengesRepository = (db: Db) => ({
  /**
   * Records that a challenge was used; false if it already was. One INSERT on the primary key
   * decides, so of any number of concurrent submissions (on any number of instances) exactly one
   * wins. The expiry is rounded up to the minute: the row is needed until the nonce expires, and
   * needs to say no more precisely when someone logged in. The winner's device is recorded as
   * seen today in the same statement (a login is one round trip fewer; the update writes only on
   * a device's first login of the day).
   */
  async markUsed(
    nonceHash: Buffer,
    expirySeconds: number,
    device: { accountId: string; deviceId: number },
  ): Promise<boolean> {
    const result = await db.$client.query<{ used: number }>({
      name: 'challenge-mark-used',
      text: `WITH used AS (
         INSERT INTO used_challenges (nonce_hash, expires_at) VALUES ($1, $2)
         ON CONFLICT DO NOTHING RETURNING 1
       ), seen AS (
         UPDATE devices SET last_seen_on = current_date
         WHERE account_id = $3 AND device_id = $4 AND last_seen_on < current_date
           AND EXISTS (SELECT 1 FROM used)
       )
       SELECT count(*)::int AS used FROM used`,
      values: [
        nonceHash,
        new Date(Math.ceil(expirySeconds / 60) * 60 * 1000),
        device.accountId,
        device.deviceId,
      ],
    });
    return result.rows[0]?.used === 1;
  },
});

export type ChallengesRepository = ReturnType<typeof createChallengesRepository>;

/** Removes what has expired outside the envelope queue; returns the number of rows removed. */
export const deleteExpiredCredentials = async (db: Db): Promise<number> => {
  const challenges = await db
    .delete(usedChallenges)
    .where(lte(usedChallenges.expiresAt, sql`now()`))
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
