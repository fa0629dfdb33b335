import { createHash } from 'node:crypto';
import { and, eq, gt, isNull, or, sql } from 'drizzle-orm';
import { PRIMARY_DEVICE_ID, type AccountId, type CreateAccountRequest } from '@privcomm/wire';
import type { Db } from '../db/database.ts';
import type { Executor } from '../db/executor.ts';
import { accounts, devices, inviteCodes } from '../db/schema.ts';
import { RelayError } from '../errors.ts';
import { notifyIn } from '../db/events.ts';
import { newDeviceRow, type NewDeviceKeys } from './devices.ts';

export const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Takes one use of an invite code inside the caller's transaction, or throws INVITE_INVALID. */
const consumeInvite = async (tx: Executor, code: string): Promise<void> => {
  const taken = await tx
    .update(inviteCodes)
    .set({ usesLeft: sql`${inviteCodes.usesLeft} - 1` })
    .where(
      and(
        eq(inviteCodes.codeHash, sha256(code)),
        gt(inviteCodes.usesLeft, 0),
        or(isNull(inviteCodes.expiresAt), gt(inviteCodes.expiresAt, sql`now()`)),
      ),
    )
    .returning({ usesLeft: inviteCodes.usesLeft });
  if (taken.length === 0) throw new RelayError('INVITE_INVALID');
};

export const createAccountsRepository = (db: Db) => ({
  /**
   * Creates the account and its primary device with its signed and last-resort keys in one
   * transaction, so an account always has a usable bundle. With `inviteCode`, one use of the code
   * is taken in the same transaction: a failed registration does not spend it.
   */
  async create(request: CreateAccountRequest, inviteCode: string | undefined): Promise<AccountId> {
    return db.transaction(async (tx) => {
      if (inviteCode !== undefined) await consumeInvite(tx, inviteCode);
      const [account] = await tx
        .insert(accounts)
        .values({ identityKey: Buffer.from(request.identityKey, 'base64') })
        .returning({ id: accounts.id });
      if (!account) throw new Error('account insert returned nothing');
      await tx
        .insert(devices)
        .values(newDeviceRow(account.id, PRIMARY_DEVICE_ID, request satisfies NewDeviceKeys));
      return account.id as AccountId;
    });
  },

  async identityKey(accountId: AccountId): Promise<Buffer | undefined> {
    const [row] = await db
      .select({ identityKey: accounts.identityKey })
      .from(accounts)
      .where(eq(accounts.id, accountId));
    return row?.identityKey;
  },

  /**
   * Deletes the account; keys, devices, envelopes, challenges and link tokens cascade, and the
   * same transaction tells every instance to close the account's sockets.
   */
  async delete(accountId: AccountId): Promise<boolean> {
    return db.transaction(async (tx) => {
      const deleted = await tx
        .delete(accounts)
        .where(eq(accounts.id, accountId))
        .returning({ id: accounts.id });
      if (deleted.length === 0) return false;
      await notifyIn(tx, { t: 'removed', a: accountId, d: 0 });
      return true;
    });
  },
});

export type AccountsRepository = ReturnType<typeof createAccountsRepository>;

export const createInvitesRepository = (db: Db) => ({
  async create(code: string, uses: number, expiresAt: Date | null): Promise<void> {
    await db.insert(inviteCodes).values({ codeHash: sha256(code), usesLeft: uses, expiresAt });
  },
});
