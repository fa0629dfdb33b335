/**
 * Group changes and logs from JSON that crossed a boundary (a decrypted content, a store's file,
 * the web bridge): every field checked, nothing cast. Whether a change is allowed is the group
 * log's question; here only its shape.
 */

import { isAccountId } from '@privcomm/wire';
import type { GroupLog } from './group-log.ts';
import {
  GROUP_ACTIONS,
  GroupError,
  MAX_GROUP_MEMBERS,
  checkState,
  isGroupId,
  isStateHash,
  type GroupChange,
} from './group-state.ts';

const bad = (why: string): GroupError =>
  new GroupError('INVALID_GROUP_CHANGE', `invalid group change: ${why}`);

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const isNumber = (value: unknown): value is number =>
  typeof value === 'number' && Number.isFinite(value);

/**
 * A change's shape: every field of the right type, the members a sorted list of at most
 * MAX_GROUP_MEMBERS account ids (checkState). Throws GroupError INVALID_GROUP_CHANGE.
 */
export const parseGroupChange = (value: unknown): GroupChange => {
  if (!isRecord(value) || !isRecord(value.state)) throw bad('not an object');
  const { state } = value;
  const action = GROUP_ACTIONS.find((a) => a === value.action);
  if (
    action === undefined ||
    !isAccountId(value.author) ||
    !(value.base === '' || isStateHash(value.base)) ||
    !isGroupId(state.groupId) ||
    typeof state.title !== 'string' ||
    !isNumber(state.version) ||
    !Array.isArray(state.members) ||
    state.members.length > MAX_GROUP_MEMBERS
  ) {
    throw bad('a field of the wrong type');
  }
  const members = state.members.map((m: unknown) => {
    if (!isRecord(m) || !isAccountId(m.accountId) || typeof m.admin !== 'boolean') {
      throw bad('a member of the wrong type');
    }
    if (!isNumber(m.since)) throw bad('a member of the wrong type');
    return { accountId: m.accountId, admin: m.admin, since: m.since };
  });
  const change: GroupChange = {
    action,
    author: value.author,
    base: value.base,
    state: { groupId: state.groupId, title: state.title, version: state.version, members },
  };
  checkState(change.state);
  return change;
};

/** A group log as a store wrote it (JSON.stringify of a GroupLog). Throws GroupError. */
export const parseGroupLog = (value: unknown): GroupLog => {
  if (
    !isRecord(value) ||
    !isRecord(value.changes) ||
    !isGroupId(value.groupId) ||
    typeof value.head !== 'string' ||
    !Array.isArray(value.pending) ||
    !Array.isArray(value.reapplied)
  ) {
    throw bad('not a group log');
  }
  const changes: Record<string, GroupChange> = {};
  for (const [hash, change] of Object.entries(value.changes)) {
    if (!isStateHash(hash)) throw bad('a log keyed by something else than state hashes');
    changes[hash] = parseGroupChange(change);
  }
  if (value.head !== '' && !changes[value.head]) throw bad('a log without its head');
  const reapplied = value.reapplied.map((h: unknown) => {
    if (!isStateHash(h)) throw bad('a log with a bad hash');
    return h;
  });
  return {
    groupId: value.groupId,
    changes,
    pending: value.pending.map(parseGroupChange),
    head: value.head,
    reapplied,
  };
};
