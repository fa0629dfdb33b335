import { lte, sql } from 'drizzle-orm';
import type { Db } from '../db/database.ts';
import { inviteCodes, linkTokens, usedChallenges } from '../db/schema.ts';

export const createChallengesRepository = (db: Db) => ({
  /**
   * Records that a challenge was used; false if it already was. One INSERT on the primary key
   * decides, so of any number of concurrent submissions (on any number of instances) exactly one
   * wins. The expiry is rounded up to the minute: the row is needed until the nonce expires, and
   * needs to say no more precisely when someone logged in.
   */
  async markUsed(nonceHash: Buffer, expirySeconds: number): Promise<boolean> {
    const inserted = await db
      .insert(usedChallenges)
      .values({ nonceHash, expiresAt: new Date(Math.ceil(expirySeconds / 60) * 60 * 1000) })
      .onConflictDoNothing()
      .returning({ one: sql`1` });
    return inserted.length > 0;
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
