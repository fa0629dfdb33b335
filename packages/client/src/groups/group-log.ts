/**
 * One device's knowledge of one group: every valid change it has seen, the changes waiting for
 * the state they were based on, and the current state. Pure: receiving a change returns a new log.
 *
 * The convergence rule. Changes form a tree (each names the hash of its base state). A change is
 * valid when its base is valid and validateChange accepts it on that base. The current state
 * (head) is the valid change with the highest version; between changes at the same version, the
 * one whose state hash is lower. Since validity depends only on the change and its ancestors,
 * the set of valid changes, and so the head, is the same on every device that received the same
 * changes, in whatever order they came (the property test in groups.test.ts delivers them in
 * random orders). A change that lost a tie is not lost for its author: reapplyLost makes it again
 * on top of the head.
 *
 * Joining. A device that is not a member (yet, or any more) cannot check how the group came to
 * its state: it accepts the 'add' that made it a member (the member's `since` is that change's
 * version) from an author who is an admin in that state, as a starting point. It thereby trusts
 * the member who added it, as it trusts any member for what they write in the group. A founder
 * waits for the creation, and a member catching up after being offline needs no trust: changes
 * whose base it lacks wait in `pending` until the base arrives.
 */

import type { AccountId } from '@privcomm/wire';
import {
  GroupError,
  checkState,
  intentOf,
  isAdmin,
  makeChange,
  memberOf,
  stateHash,
  validateChange,
  type GroupChange,
  type GroupId,
  type GroupState,
} from './group-state.ts';

/** Versions of history kept below the head: enough for any fork honest devices make. */
export const KEPT_VERSIONS = 64;
/** Changes waiting for their base; older ones are dropped beyond this. */
export const MAX_PENDING_CHANGES = 128;

export interface GroupLog {
  readonly groupId: GroupId;
  /** Valid changes by the hash of their resulting state. */
  readonly changes: Readonly<Record<string, GroupChange>>;
  /** Changes whose base is not known yet, oldest first. */
  readonly pending: readonly GroupChange[];
  /** The hash of the current state; '' while only pending changes are known. */
  readonly head: string;
  /** Hashes of this account's own changes that lost and were made again (reapplyLost). */
  readonly reapplied: readonly string[];
}

export type ReceiveOutcome =
  /** The change is valid and the head moved (to it, or to changes that waited for it). */
  | { readonly status: 'applied' }
  /** Valid, but the head stays where it was (a superseded version). */
  | { readonly status: 'superseded' }
  /** Kept until the state it was based on arrives. */
  | { readonly status: 'pending' }
  | { readonly status: 'duplicate' }
  | { readonly status: 'refused'; readonly error: GroupError };

/** The current state, or undefined while this device waits for the group's history. */
export const currentState = (log: GroupLog): GroupState | undefined => log.changes[log.head]?.state;

export const emptyLog = (groupId: GroupId): GroupLog => ({
  groupId,
  changes: {},
  pending: [],
  head: '',
  reapplied: [],
});

/** Whether `a` beats `b` as head: a higher version, or the same one and a lower hash. */
const beats = (a: GroupChange, aHash: string, b: GroupChange, bHash: string): boolean =>
  a.state.version > b.state.version || (a.state.version === b.state.version && aHash < bHash);

const bestHead = (changes: Readonly<Record<string, GroupChange>>): string => {
  let head = '';
  for (const [hash, change] of Object.entries(changes)) {
    const current = changes[head];
    if (!current || beats(change, hash, current, head)) head = hash;
  }
  return head;
};

/**
 * Whether a change whose base this device lacks may start its history (see "Joining"): the add
 * that made it a member (its `since` is this version), by an admin. Any other change waits.
 *
 * A member may be added again too, by an admin it already knows: when its own add lost to a
 * concurrent change, the adder makes the add again on top of the winner (reapplyLost), and the
 * winner was sent only to the members its author knew, so this device never gets that base.
 * Waiting would leave it behind for good; an admin it knows could change its membership anyway.
 */
const joins = (change: GroupChange, self: AccountId, current: GroupState | undefined): boolean => {
  if (
    change.action !== 'add' ||
    memberOf(change.state, self)?.since !== change.state.version ||
    !isAdmin(change.state, change.author)
  ) {
    return false;
  }
  if (current === undefined) return true;
  if (change.state.version <= current.version) return false;
  return memberOf(current, self) === undefined || isAdmin(current, change.author);
};

/**
 * Receives a change: from its author pairwise (the caller checked that the pairwise sender is
 * `change.author`), or made by this device. Never throws for a bad change: it is refused.
 */
export const receiveChange = (
  log: GroupLog | undefined,
  change: GroupChange,
  self: AccountId,
): { log: GroupLog | undefined; outcome: ReceiveOutcome } => {
  let hash: string;
  try {
    checkState(change.state);
    hash = stateHash(change.state);
  } catch (error) {
    return { log, outcome: refusal(error) };
  }
  const known = log ?? emptyLog(change.state.groupId);
  if (change.state.groupId !== known.groupId) {
    return { log, outcome: refusedAs('INVALID_GROUP_CHANGE', 'another group') };
  }
  // A state already known is a duplicate, whoever made it. A waiting change is compared whole: a
  // forgery can claim the same state as a genuine change, and must not stand in for it.
  if (known.changes[hash] || known.pending.some((p) => sameChange(p, change))) {
    return { log, outcome: { status: 'duplicate' } };
  }
  const changes: Record<string, GroupChange> = { ...known.changes };
  const base = changes[change.base];
  if (change.action === 'create') {
    if (Object.values(changes).some((c) => c.action === 'create')) {
      // Ids are random: a second creation under a known id is a forgery.
      return { log, outcome: refusedAs('NOT_ALLOWED', 'the group exists already') };
    }
    try {
      validateChange(change, undefined);
    } catch (error) {
      return { log, outcome: refusal(error) };
    }
  } else if (base) {
    try {
      validateChange(change, base.state);
    } catch (error) {
      return { log, outcome: refusal(error) };
    }
  } else if (!joins(change, self, currentState(known))) {
    // Even a change that does not name this device waits: it may be the removal of a founder
    // whose creation message is still on its way.
    const pending = [...known.pending, change].slice(-MAX_PENDING_CHANGES);
    return { log: { ...known, pending }, outcome: { status: 'pending' } };
  }
  changes[hash] = change;
  // Changes that waited for this one (or for one it unblocks) are checked now.
  let pending = [...known.pending];
  for (let progress = true; progress;) {
    progress = false;
    for (const waiting of pending) {
      const waitingBase = changes[waiting.base];
      if (!waitingBase) continue;
      pending = pending.filter((p) => p !== waiting);
      progress = true;
      try {
        validateChange(waiting, waitingBase.state);
        const waitingHash = stateHash(waiting.state);
        changes[waitingHash] ??= waiting;
      } catch {
        // An invalid change that waited is dropped, as it would have been on arrival.
      }
    }
  }
  const head = bestHead(changes);
  const floor = (changes[head]?.state.version ?? 0) - KEPT_VERSIONS;
  for (const [h, c] of Object.entries(changes)) if (c.state.version < floor) delete changes[h];
  pending = pending.filter((p) => p.state.version >= floor);
  const reapplied = known.reapplied.filter((h) => changes[h] !== undefined);
  return {
    log: { ...known, changes, pending, head, reapplied },
    outcome: { status: head !== known.head ? 'applied' : 'superseded' },
  };
};

/** The hashes from the head back through its bases, as far as the log knows them. */
const ancestry = (log: GroupLog): Set<string> => {
  const seen = new Set<string>();
  for (let hash: string | undefined = log.head; hash && !seen.has(hash);) {
    seen.add(hash);
    hash = log.changes[hash]?.base;
  }
  return seen;
};

/**
 * This account's own changes that lost to a concurrent one (valid, not on the head's line), made
 * again on top of the head. Returns the new changes (already in the returned log) for the caller
 * to send; a change that no longer applies (its member already added, its author no longer an
 * admin) is dropped.
 */
export const reapplyLost = (
  log: GroupLog,
  self: AccountId,
): { log: GroupLog; changes: GroupChange[] } => {
  const onLine = ancestry(log);
  const lost = Object.entries(log.changes)
    .filter(
      ([hash, c]) =>
        c.author === self &&
        c.action !== 'create' &&
        !onLine.has(hash) &&
        !log.reapplied.includes(hash),
    )
    .sort(([, a], [, b]) => a.state.version - b.state.version);
  let current = log;
  const made: GroupChange[] = [];
  for (const [hash, change] of lost) {
    current = { ...current, reapplied: [...current.reapplied, hash] };
    const base = current.changes[change.base];
    const intent = base && intentOf(change, base.state);
    if (!intent) continue;
    let again: GroupChange;
    try {
      const state = currentState(current);
      if (!state) break;
      again = makeChange(state, self, intent);
    } catch (error) {
      if (error instanceof GroupError) continue;
      throw error;
    }
    const result = receiveChange(current, again, self);
    if (result.log && result.outcome.status === 'applied') {
      current = result.log;
      made.push(again);
    }
  }
  return { log: current, changes: made };
};

const sameChange = (a: GroupChange, b: GroupChange): boolean =>
  a.action === b.action &&
  a.author === b.author &&
  a.base === b.base &&
  stateHash(a.state) === stateHash(b.state);

const refusal = (error: unknown): ReceiveOutcome => {
  if (error instanceof GroupError) return { status: 'refused', error };
  throw error;
};

const refusedAs = (code: GroupError['code'], message: string): ReceiveOutcome => ({
  status: 'refused',
  error: new GroupError(code, message),
});
