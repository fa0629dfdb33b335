import { randomBytes } from 'node:crypto';
import {
  createInvitesRepository,
  inviteIdOf,
  INVITE_ID_LENGTH,
} from '../../repositories/accounts.ts';
import type { AdminCommand } from './command.ts';

/**
 * A new invite code: 16 random bytes in base64url (22 characters), never starting with "-",
 * which a command line reads as an option: `invite revoke -Xb…` answered "unknown option" (one
 * code in 64; it failed CI once). Dropping those codes costs 0.02 bits of the 128.
 */
export const newInviteCode = (): string => {
  for (;;) {
    const code = randomBytes(16).toString('base64url');
    if (!code.startsWith('-')) return code;
  }
};

/** `invite create`: new codes, printed once (the relay keeps only their hashes). */
export const createInvites: AdminCommand = async ({ database, options, out }) => {
  const count = options.integer('count', 1, 1, 100);
  const uses = options.integer('uses', 1, 1, 1000);
  const days = options.integer('expires-days', 7, 0, 3650);
  const invites = createInvitesRepository(database.db);
  const expiresAt = days === 0 ? null : new Date(Date.now() + days * 86_400_000);
  for (let i = 0; i < count; i += 1) {
    const code = newInviteCode();
    await invites.create(code, uses, expiresAt);
    out(code);
  }
  return 0;
};

/** `invite list`: the codes that can still be used, by id (the start of their hash). */
export const listInvites: AdminCommand = async ({ database, options, out }) => {
  const invites = await createInvitesRepository(database.db).listUsable();
  if (options.json) {
    for (const invite of invites) out(JSON.stringify(invite));
    return 0;
  }
  if (invites.length === 0) {
    out('no usable invite codes');
    return 0;
  }
  out('id            uses left  expires                   created');
  for (const invite of invites) {
    const expires = invite.expiresAt?.toISOString().replace(/\.\d+Z$/, 'Z') ?? 'never';
    out(
      `${invite.id}  ${String(invite.usesLeft).padStart(9)}  ${expires.padEnd(24)}  ${invite.createdOn}`,
    );
  }
  return 0;
};

/** `invite revoke ID|CODE`: deletes one code, named by its id from `invite list` or itself. */
export const revokeInvite: AdminCommand = async ({ database, positionals, out, fail }) => {
  const given = positionals[0] ?? '';
  // A code is 22 base64url characters; an id 6-12 hex digits (a prefix is enough if unique).
  const id = /^[A-Za-z0-9_-]{22}$/.test(given)
    ? inviteIdOf(given)
    : /^[0-9a-f]{6,12}$/.test(given)
      ? given
      : fail(
          `"${given}" is neither an invite code nor an id (6-${INVITE_ID_LENGTH} hex digits) from \`invite list\``,
        );
  const matched = await createInvitesRepository(database.db).revoke(id);
  if (matched === 1) {
    out(`revoked invite ${id}`);
    return 0;
  }
  return fail(
    matched === 0
      ? `no invite code ${id}: see \`invite list\``
      : `${matched} invite codes start with ${id}: give more digits of the id`,
  );
};
