import { lte, sql } from 'drizzle-orm';
import { arrayLiteral } from '../db/array-literal.ts';
import type { Db } from '../db/database.ts';
import { inviteCodes, linkTokens, usedChallenges } from '../db/schema.ts';

/** A login challenge to use up, and the device whose login it is. */
export interface UsedChallenge {
  readonly nonceHash: Buffer;
  /** When the challenge expires, in seconds since the epoch. */
  readonly expirySeconds: number;
  readonly accountId: string;
  readonly deviceId: number;
}

export const createChallengesRepository = (db: Db) => ({
  /**
   * Records that challenges were used; for each, in the order given, false if it already was.
   * The INSERT on the primary key decides, so of any number of concurrent submissions (on any
   * number of instances) exactly one wins; a nonce given twice in one call is won by its first
   * occurrence. Concurrent logins share the statement (the relay calls it through a GroupRead:
   * app.ts). The expiry is rounded up to the minute: the row is needed until the nonce expires,
   * and needs to say no more precisely when someone logged in. Each winner's device is recorded
   * as seen today in the same statement (a login is one round trip fewer; the update writes only
   * on a device's first login of the day).
   */
  async markUsed(challenges: readonly UsedChallenge[]): Promise<boolean[]> {
    const result = await db.$client.query<{ n: string }>({
      name: 'challenges-mark-used',
      text: `WITH input AS (
         SELECT * FROM unnest($1::bytea[], $2::timestamptz[], $3::uuid[], $4::int[])
           WITH ORDINALITY AS r(nonce_hash, expires_at, account_id, device_id, n)
       ), used AS (
         INSERT INTO used_challenges (nonce_hash, expires_at)
         SELECT nonce_hash, expires_at FROM input
         ON CONFLICT DO NOTHING RETURNING nonce_hash
       ), winners AS (
         SELECT DISTINCT ON (input.nonce_hash) input.n, input.account_id, input.device_id
         FROM input JOIN used USING (nonce_hash)
         ORDER BY input.nonce_hash, input.n
       ), seen AS (
         UPDATE devices SET last_seen_on = current_date FROM winners
         WHERE devices.account_id = winners.account_id AND devices.device_id = winners.device_id
           AND devices.last_seen_on < current_date
       )
       SELECT n FROM winners`,
      values: [
        challenges.map((challenge) => challenge.nonceHash),
        challenges.map(
          (challenge) => new Date(Math.ceil(challenge.expirySeconds / 60) * 60 * 1000),
        ),
        arrayLiteral(challenges.map((challenge) => challenge.accountId)),
        arrayLiteral(challenges.map((challenge) => challenge.deviceId)),
      ],
    });
    const used = challenges.map(() => false);
    for (const row of result.rows) used[Number(row.n) - 1] = true;
    return used;
  },
});

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
