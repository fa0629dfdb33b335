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

/** An invite code as the relay knows it: never the code, only its hash. */
export interface InviteSummary {
  /** The first 12 hex digits of the code's SHA-256: names the code for `invite revoke`. */
  readonly id: string;
  readonly usesLeft: number;
  readonly expiresAt: Date | null;
  readonly createdOn: string;
}

export const INVITE_ID_LENGTH = 12;

/** The id `invite list` shows for a code. */
export const inviteIdOf = (code: string): string =>
  sha256(code).toString('hex').slice(0, INVITE_ID_LENGTH);

export const createInvitesRepository = (db: Db) => ({
  async create(code: string, uses: number, expiresAt: Date | null): Promise<void> {
    await db.insert(inviteCodes).values({ codeHash: sha256(code), usesLeft: uses, expiresAt });
  },

  /** Every code that can still be used, oldest first. */
  async listUsable(): Promise<InviteSummary[]> {
    const rows = await db
      .select()
      .from(inviteCodes)
      .where(
        and(
          gt(inviteCodes.usesLeft, 0),
          or(isNull(inviteCodes.expiresAt), gt(inviteCodes.expiresAt, sql`now()`)),
        ),
      )
      .orderBy(inviteCodes.createdOn, inviteCodes.codeHash);
    return rows.map((row) => ({
      id: row.codeHash.toString('hex').slice(0, INVITE_ID_LENGTH),
      usesLeft: row.usesLeft,
      expiresAt: row.expiresAt,
      createdOn: row.createdOn,
    }));
  },

  /**
   * Deletes the codes whose hash starts with `idPrefix` (hex), if exactly one does; returns how
   * many matched (0, 1, or more when the prefix is ambiguous and nothing was deleted).
   */
  async revoke(idPrefix: string): Promise<number> {
    return db.transaction(async (tx) => {
      const matching = await tx
        .select({ codeHash: inviteCodes.codeHash })
        .from(inviteCodes)
        .where(sql`encode(${inviteCodes.codeHash}, 'hex') LIKE ${`${idPrefix}%`}`);
      if (matching.length === 1) {
        await tx.delete(inviteCodes).where(eq(inviteCodes.codeHash, matching[0]!.codeHash));
      }
      return matching.length;
    });
  },
});
