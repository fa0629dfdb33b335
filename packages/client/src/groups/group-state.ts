/**
 * A group's state and the changes that make it, as pure functions (no I/O, no clock): what a
 * change may do, who may make it, and the hash that chains a change to the state it was based on.
 *
 * A group is known only to its members: its state travels inside end-to-end encrypted pairwise
 * messages (content.ts, kind 'group-change'), never through the relay in clear. Each change
 * carries the whole resulting state, its version (the base's + 1) and the hash of the base state,
 * so that a receiver can check the change against the state it was made on (group-log.ts).
 */

import { sha256 } from '@noble/hashes/sha2.js';
import { isAccountId, type AccountId } from '@privcomm/wire';
import { utf8Encode } from '../bytes.ts';

/** Members per group, the creator included. A change that would exceed it is refused. */
export const MAX_GROUP_MEMBERS = 1000;
/** Characters in a group's title (the app's header shows far fewer). */
export const MAX_GROUP_TITLE = 128;

/** A group id: 16 bytes from the CSPRNG, as 32 lower-case hex digits. */
export type GroupId = string;
const GROUP_ID = /^[0-9a-f]{32}$/;
export const isGroupId = (value: unknown): value is GroupId =>
  typeof value === 'string' && GROUP_ID.test(value);

/** The hash of a state (state hash): 64 lower-case hex digits. */
const STATE_HASH = /^[0-9a-f]{64}$/;
export const isStateHash = (value: unknown): value is string =>
  typeof value === 'string' && STATE_HASH.test(value);

export interface GroupMember {
  readonly accountId: AccountId;
  readonly admin: boolean;
  /**
   * The version of the change that added this member (1 for the founders). A device uses it to
   * tell the change that added it, which it may start from, from one it must wait for history.
   */
  readonly since: number;
}

export interface GroupState {
  readonly groupId: GroupId;
  readonly title: string;
  /** 1 at creation, +1 with every change. */
  readonly version: number;
  /** Sorted by account id, no duplicates (normalise() makes it so; validation checks it). */
  readonly members: readonly GroupMember[];
}

export type GroupAction = 'create' | 'add' | 'remove' | 'leave' | 'promote' | 'title';
export const GROUP_ACTIONS: readonly GroupAction[] = [
  'create',
  'add',
  'remove',
  'leave',
  'promote',
  'title',
];

export interface GroupChange {
  readonly action: GroupAction;
  /** The account that made it: the pairwise sender must be this account (the receiver checks). */
  readonly author: AccountId;
  /** stateHash of the state it was based on; '' for 'create'. */
  readonly base: string;
  /** The whole state after the change. */
  readonly state: GroupState;
}

/** Why a change is not accepted; stable codes an interface can map to a message. */
export type GroupErrorCode =
  /** The change is malformed or does not do what its action says. */
  | 'INVALID_GROUP_CHANGE'
  /** The author may not make this change in the base state (not an admin, not a member). */
  | 'NOT_ALLOWED'
  /** More than MAX_GROUP_MEMBERS members. */
  | 'GROUP_TOO_LARGE'
  /** The change would change nothing (adding a member already in, an unchanged title...). */
  | 'NO_CHANGE';

export class GroupError extends Error {
  override readonly name = 'GroupError';
  constructor(
    readonly code: GroupErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const byAccount = (a: GroupMember, b: GroupMember): number =>
  a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : 0;

/** Members sorted by account id, each once (the last flag given for an account wins). */
export const normaliseMembers = (members: readonly GroupMember[]): GroupMember[] => {
  const map = new Map<AccountId, GroupMember>();
  for (const m of members) {
    map.set(m.accountId, { accountId: m.accountId, admin: m.admin, since: m.since });
  }
  return [...map.values()].sort(byAccount);
};

/**
 * The bytes a state is hashed over: a fixed JSON layout (keys in a fixed order, members sorted),
 * so that every device computes the same hash for the same state.
 */
const canonical = (state: GroupState): string =>
  JSON.stringify([
    state.groupId,
    state.version,
    state.title,
    state.members.map((m) => [m.accountId, m.admin ? 1 : 0, m.since]),
  ]);

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** SHA-256 of the canonical state: what a change names as its base, and the tie-breaker. */
export const stateHash = (state: GroupState): string => hex(sha256(utf8Encode(canonical(state))));

export const memberOf = (state: GroupState, accountId: string): GroupMember | undefined =>
  state.members.find((m) => m.accountId === accountId);
export const isAdmin = (state: GroupState, accountId: string): boolean =>
  memberOf(state, accountId)?.admin === true;

/** The shape every state must have, whatever the change: a refusal names the first fault. */
export const checkState = (state: GroupState): void => {
  if (!isGroupId(state.groupId)) throw invalid('bad group id');
  if (!Number.isSafeInteger(state.version) || state.version < 1) throw invalid('bad version');
  checkTitle(state.title);
  if (state.members.length > MAX_GROUP_MEMBERS) {
    throw new GroupError(
      'GROUP_TOO_LARGE',
      `a group has at most ${MAX_GROUP_MEMBERS} members: remove some before adding more`,
    );
  }
  if (state.members.length === 0) throw invalid('a group without members');
  for (let i = 0; i < state.members.length; i += 1) {
    const m = state.members[i];
    if (
      !m ||
      !isAccountId(m.accountId) ||
      typeof m.admin !== 'boolean' ||
      !Number.isSafeInteger(m.since) ||
      m.since < 1 ||
      m.since > state.version
    ) {
      throw invalid('bad member');
    }
    const previous = state.members[i - 1];
    if (previous && previous.accountId >= m.accountId) throw invalid('members not sorted');
  }
  if (!state.members.some((m) => m.admin)) throw invalid('a group without an admin');
};

export const checkTitle = (title: string): void => {
  if (typeof title !== 'string' || title.trim() === '' || title.length > MAX_GROUP_TITLE) {
    throw invalid(`a title is 1 to ${MAX_GROUP_TITLE} characters`);
  }
};

const invalid = (why: string): GroupError =>
  new GroupError('INVALID_GROUP_CHANGE', `invalid group change: ${why}`);

const sameMembers = (a: readonly GroupMember[], b: readonly GroupMember[]): boolean =>
  a.length === b.length &&
  a.every((m, i) => {
    const other = b[i];
    return m.accountId === other?.accountId && m.admin === other.admin && m.since === other.since;
  });

/**
 * Who is left when `leaver` leaves: if no admin would remain, the remaining member with the lowest
 * account id becomes one (a rule, not a choice, so that the receivers can check it).
 */
export const membersAfterLeave = (
  members: readonly GroupMember[],
  leaver: AccountId,
): GroupMember[] => {
  const rest = members.filter((m) => m.accountId !== leaver);
  if (rest.length === 0 || rest.some((m) => m.admin)) return rest;
  return rest.map((m, i) => (i === 0 ? { ...m, admin: true } : m));
};

/**
 * Checks a change against its base state (undefined for 'create'): the author may make it, and
 * the resulting state differs from the base exactly as the action says. Throws GroupError.
 */
export const validateChange = (change: GroupChange, base: GroupState | undefined): void => {
  const { state, author, action } = change;
  checkState(state);
  if (action === 'create') {
    if (base !== undefined || change.base !== '' || state.version !== 1) {
      throw invalid('a creation has no base');
    }
    if (!isAdmin(state, author)) throw invalid('the creator is not an admin of it');
    if (!state.members.every((m) => m.since === 1)) throw invalid('a founder joined later');
    return;
  }
  if (base === undefined) throw invalid('a change without its base');
  if (state.groupId !== base.groupId) throw invalid('another group');
  if (state.version !== base.version + 1) throw invalid('version is not the base’s + 1');
  if (!memberOf(base, author)) throw new GroupError('NOT_ALLOWED', 'the author is not a member');
  const before = new Map(base.members.map((m) => [m.accountId, m]));
  const after = new Map(state.members.map((m) => [m.accountId, m]));
  const titleKept = state.title === base.title;
  switch (action) {
    case 'title':
      // Any member may rename the group; membership stays as it was.
      if (!sameMembers(base.members, state.members)) throw invalid('a rename changed members');
      if (titleKept) throw invalid('a rename kept the title');
      return;
    case 'leave':
      if (!titleKept) throw invalid('a leave changed the title');
      if (!sameMembers(membersAfterLeave(base.members, author), state.members)) {
        throw invalid('a leave did more than remove its author');
      }
      return;
    case 'add':
    case 'remove':
    case 'promote': {
      if (!isAdmin(base, author)) {
        throw new GroupError('NOT_ALLOWED', 'only an admin changes the membership');
      }
      if (!titleKept) throw invalid(`an ${action} changed the title`);
      const same = (a: GroupMember | undefined, b: GroupMember) =>
        a !== undefined && a.admin === b.admin && a.since === b.since;
      if (action === 'add') {
        if (!base.members.every((m) => same(after.get(m.accountId), m))) {
          throw invalid('an add changed existing members');
        }
        if (after.size <= before.size) throw invalid('an add added nobody');
        const fresh = state.members.filter((m) => !before.has(m.accountId));
        if (!fresh.every((m) => m.since === state.version && !m.admin)) {
          throw invalid('an added member is not new in this version, or is an admin');
        }
      } else if (action === 'remove') {
        if (!state.members.every((m) => same(before.get(m.accountId), m))) {
          throw invalid('a remove changed the remaining members');
        }
        if (after.size >= before.size) throw invalid('a remove removed nobody');
        if (!after.has(author)) throw invalid('an admin leaves with leave, not remove');
      } else {
        const promotedOnly =
          after.size === before.size &&
          base.members.every((m) => {
            const now = after.get(m.accountId);
            return now !== undefined && now.since === m.since && (now.admin || !m.admin);
          });
        if (!promotedOnly || sameMembers(base.members, state.members)) {
          throw invalid('a promote did more than make members admins');
        }
      }
      return;
    }
  }
};

/** What a change asks for, independent of the state it was made on (to make it again). */
export type GroupIntent =
  | { readonly action: 'add'; readonly accounts: readonly AccountId[] }
  | { readonly action: 'remove'; readonly accounts: readonly AccountId[] }
  | { readonly action: 'promote'; readonly accounts: readonly AccountId[] }
  | { readonly action: 'leave' }
  | { readonly action: 'title'; readonly title: string };

/** The intent of a (valid) change made on `base`. */
export const intentOf = (change: GroupChange, base: GroupState): GroupIntent | undefined => {
  const before = new Set(base.members.map((m) => m.accountId));
  const after = new Set(change.state.members.map((m) => m.accountId));
  switch (change.action) {
    case 'add':
      return { action: 'add', accounts: [...after].filter((a) => !before.has(a)) };
    case 'remove':
      return { action: 'remove', accounts: [...before].filter((a) => !after.has(a)) };
    case 'promote':
      return {
        action: 'promote',
        accounts: change.state.members
          .filter((m) => m.admin && !isAdmin(base, m.accountId))
          .map((m) => m.accountId),
      };
    case 'leave':
      return { action: 'leave' };
    case 'title':
      return { action: 'title', title: change.state.title };
    case 'create':
      return undefined;
  }
};

/** A new group: the creator (admin) and the members (not admins). */
export const createGroup = (
  groupId: GroupId,
  creator: AccountId,
  title: string,
  members: readonly AccountId[],
): GroupChange => {
  const change: GroupChange = {
    action: 'create',
    author: creator,
    base: '',
    state: {
      groupId,
      title: title.trim(),
      version: 1,
      members: normaliseMembers([
        ...members
          .filter((a) => a !== creator)
          .map((accountId) => ({ accountId, admin: false, since: 1 })),
        { accountId: creator, admin: true, since: 1 },
      ]),
    },
  };
  validateChange(change, undefined);
  return change;
};

/**
 * The change that does `intent` on `base`, made by `author`; GroupError when it may not
 * (NOT_ALLOWED, GROUP_TOO_LARGE) or would change nothing (NO_CHANGE).
 */
export const makeChange = (
  base: GroupState,
  author: AccountId,
  intent: GroupIntent,
): GroupChange => {
  let members: GroupMember[] = [...base.members];
  let title = base.title;
  switch (intent.action) {
    case 'add': {
      const fresh = intent.accounts.filter((a) => !memberOf(base, a));
      if (fresh.length === 0) throw new GroupError('NO_CHANGE', 'they are members already');
      members = normaliseMembers([
        ...members,
        ...fresh.map((accountId) => ({ accountId, admin: false, since: base.version + 1 })),
      ]);
      break;
    }
    case 'remove': {
      const gone = new Set(intent.accounts.filter((a) => memberOf(base, a) && a !== author));
      if (gone.size === 0) throw new GroupError('NO_CHANGE', 'they are not members');
      members = members.filter((m) => !gone.has(m.accountId));
      break;
    }
    case 'promote': {
      const promoted = new Set(intent.accounts.filter((a) => memberOf(base, a)?.admin === false));
      if (promoted.size === 0) throw new GroupError('NO_CHANGE', 'they are admins or not members');
      members = members.map((m) => (promoted.has(m.accountId) ? { ...m, admin: true } : m));
      break;
    }
    case 'leave':
      if (!memberOf(base, author)) throw new GroupError('NO_CHANGE', 'not a member');
      members = membersAfterLeave(members, author);
      if (members.length === 0) {
        // The last member leaving: nothing to tell anyone, the group simply ends here.
        throw new GroupError('NO_CHANGE', 'the last member leaves without a change');
      }
      break;
    case 'title':
      title = intent.title.trim();
      checkTitle(title);
      if (title === base.title) throw new GroupError('NO_CHANGE', 'the title is unchanged');
      break;
  }
  const change: GroupChange = {
    action: intent.action,
    author,
    base: stateHash(base),
    state: { groupId: base.groupId, title, version: base.version + 1, members },
  };
  validateChange(change, base);
  return change;
};
