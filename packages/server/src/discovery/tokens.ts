import { and, eq, inArray, lt } from 'drizzle-orm';
import type { AccountId } from '@privcomm/wire';
import type { Db } from '../db/database.ts';
import { discoveryTokens } from '../db/schema.ts';

/** The discovery_tokens table: one published token per account, at most. */
export const createDiscoveryTokensRepository = (db: Db) => ({
  /** Publishes or replaces the account's token. */
  async publish(accountId: AccountId, keyVersion: number, token: Buffer): Promise<void> {
    await db
      .insert(discoveryTokens)
      .values({ accountId, keyVersion, token })
      .onConflictDoUpdate({ target: discoveryTokens.accountId, set: { keyVersion, token } });
  },

  /** Whether there was a token to remove. */
  async remove(accountId: AccountId): Promise<boolean> {
    const deleted = await db
      .delete(discoveryTokens)
      .where(eq(discoveryTokens.accountId, accountId))
      .returning({ accountId: discoveryTokens.accountId });
    return deleted.length > 0;
  },

  async publishedVersion(accountId: AccountId): Promise<number | null> {
    const [row] = await db
      .select({ keyVersion: discoveryTokens.keyVersion })
      .from(discoveryTokens)
      .where(eq(discoveryTokens.accountId, accountId));
    return row?.keyVersion ?? null;
  },

  /** Accounts whose token is one of `tokens` under one of the active key versions. */
  async lookup(
    tokens: readonly Buffer[],
    versions: readonly number[],
  ): Promise<{ token: Buffer; accountId: AccountId }[]> {
    const rows = await db
      .select({ token: discoveryTokens.token, accountId: discoveryTokens.accountId })
      .from(discoveryTokens)
      .where(
        and(
          inArray(discoveryTokens.token, [...tokens]),
          inArray(discoveryTokens.keyVersion, [...versions]),
        ),
      );
    return rows.map((row) => ({ token: row.token, accountId: row.accountId as AccountId }));
  },

  /** Drops tokens under versions older than `version`: no key can match them any more. */
  async removeOlderThan(version: number): Promise<number> {
    const deleted = await db
      .delete(discoveryTokens)
      .where(lt(discoveryTokens.keyVersion, version))
      .returning({ accountId: discoveryTokens.accountId });
    return deleted.length;
  },
});

export type DiscoveryTokensRepository = ReturnType<typeof createDiscoveryTokensRepository>;
