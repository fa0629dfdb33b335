/**
 * Groups in the client core: making changes and sending them to the members pairwise, receiving
 * them (from members, and from this account's other devices), and this device's sender key per
 * group. The rules of a change live in group-state.ts and group-log.ts; this module only moves
 * changes between the store, the log and the network.
 *
 * The relay never sees a group: a change travels as ordinary end-to-end encrypted pairwise
 * messages, one per member account, each queued and retried through the outbox like a text.
 */

import type { AccountId } from '@privcomm/wire';
import { encodeContent, type Content } from '../content.ts';
import type { Address } from '../engine.ts';
import { ClientError, isRetryable } from '../errors.ts';
import type { ClientEvent } from '../events.ts';
import { reasonOf, type ClientLogger } from '../logger.ts';
import type { ClientStore, StoredGroup, StoredMessage } from '../store.ts';
import {
  currentState,
  reapplyLost,
  receiveChange,
  type GroupLog,
  type ReceiveOutcome,
} from './group-log.ts';
import {
  createGroup,
  isGroupId,
  makeChange,
  memberOf,
  type GroupChange,
  type GroupId,
  type GroupIntent,
  type GroupMember,
  type GroupState,
} from './group-state.ts';

/** A group as an interface shows it. */
export interface GroupSummary {
  readonly groupId: GroupId;
  readonly title: string;
  readonly version: number;
  readonly members: readonly GroupMember[];
  /** Whether this account is a member (false once it left or was removed: history stays). */
  readonly member: boolean;
  readonly admin: boolean;
  readonly expireSeconds: number;
  readonly lastMessage?: StoredMessage;
  readonly unread: number;
}

export interface GroupManagerDeps {
  readonly store: ClientStore;
  /** Sends one content pairwise to every device of an account (sender.ts). */
  send(to: AccountId, plaintext: Uint8Array): Promise<boolean>;
  /** Queues a copy for this account's other devices, sent at a random later time. */
  queueCopy(content: Content): Promise<void>;
  self(): Address;
  newId(): string;
  now(): number;
  randomBytes(length: number): Uint8Array;
  emit(event: ClientEvent): void;
  /** A member left or was removed: this device's next message needs a new sender key. */
  membersGone(groupId: GroupId): Promise<void>;
  readonly logger: ClientLogger;
}

const gone = (before: GroupState | undefined, after: GroupState | undefined): boolean =>
  before !== undefined &&
  after !== undefined &&
  before.members.some((m) => !memberOf(after, m.accountId));

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export class GroupManager {
  constructor(private readonly deps: GroupManagerDeps) {}

  /** Every group this device knows with a current state, by title. */
  async list(): Promise<GroupSummary[]> {
    const summaries: GroupSummary[] = [];
    for (const group of await this.deps.store.groups()) {
      const summary = await this.summary(group);
      if (summary) summaries.push(summary);
    }
    return summaries.sort(
      (a, b) => a.title.localeCompare(b.title) || (a.groupId < b.groupId ? -1 : 1),
    );
  }

  async info(groupId: string): Promise<GroupSummary> {
    const group = await this.deps.store.group(groupId);
    const summary = group && (await this.summary(group));
    if (!summary) throw new ClientError('UNKNOWN_GROUP', `no group ${groupId} on this device`);
    return summary;
  }

  /**
   * A group by title or id, among those this account is a member of (then among all): an
   * ambiguous title is an error that says to use the id.
   */
  async resolve(titleOrId: string): Promise<GroupId> {
    if (isGroupId(titleOrId) && (await this.deps.store.group(titleOrId))) return titleOrId;
    const groups = await this.list();
    for (const candidates of [groups.filter((g) => g.member), groups]) {
      const named = candidates.filter((g) => g.title === titleOrId);
      if (named.length === 1) return (named[0] as GroupSummary).groupId;
      if (named.length > 1) {
        throw new ClientError(
          'UNKNOWN_GROUP',
          `several groups are called "${titleOrId}"; use the group id (group list shows it)`,
        );
      }
    }
    throw new ClientError(
      'UNKNOWN_GROUP',
      `no group called "${titleOrId}"; group list shows the groups you are in`,
    );
  }

  private async summary(group: StoredGroup): Promise<GroupSummary | undefined> {
    const state = currentState(group.log);
    if (!state) return undefined;
    const self = this.deps.self().accountId;
    const messages = await this.deps.store.messages(group.groupId);
    const lastMessage = messages.at(-1);
    return {
      groupId: group.groupId,
      title: state.title,
      version: state.version,
      members: state.members,
      member: memberOf(state, self) !== undefined,
      admin: memberOf(state, self)?.admin === true,
      expireSeconds: group.expireSeconds,
      ...(lastMessage === undefined ? {} : { lastMessage }),
      unread: messages.filter((m) => m.direction === 'in' && m.status !== 'read').length,
    };
  }

  /** Creates a group with this account as its admin and tells every member. */
  async create(title: string, members: readonly AccountId[]): Promise<GroupSummary> {
    const self = this.deps.self().accountId;
    const groupId = hex(this.deps.randomBytes(16));
    const change = createGroup(groupId, self, title, members);
    const { log } = receiveChange(undefined, change, self);
    if (!log) throw new Error('a new group was refused');
    await this.deps.store.saveGroup({ groupId, log, expireSeconds: 0 });
    await this.distribute(change, undefined);
    this.deps.emit({ type: 'group', groupId });
    return this.info(groupId);
  }

  /**
   * Makes a change (add, remove, promote, leave, title) on the current state and tells the
   * members of the state before and after it. GroupError when it may not be made.
   */
  async change(groupId: GroupId, intent: GroupIntent): Promise<GroupSummary> {
    const self = this.deps.self().accountId;
    const group = await this.deps.store.group(groupId);
    const state = group && currentState(group.log);
    if (!group || !state) throw new ClientError('UNKNOWN_GROUP', `no group ${groupId} here`);
    if (!memberOf(state, self)) {
      throw new ClientError('UNKNOWN_GROUP', 'you are no longer a member of that group');
    }
    const change = makeChange(state, self, intent);
    const { log, outcome } = receiveChange(group.log, change, self);
    if (!log || outcome.status !== 'applied') throw new Error('an own change was not applied');
    await this.deps.store.saveGroup({ ...group, log });
    if (gone(state, change.state)) await this.deps.membersGone(groupId);
    await this.distribute(change, state);
    this.deps.emit({ type: 'group', groupId });
    return this.info(groupId);
  }

  /** Whether an account is a member of a group in this device's current state of it. */
  async isMember(groupId: string, accountId: string): Promise<boolean> {
    const group = await this.deps.store.group(groupId);
    const state = group && currentState(group.log);
    return state !== undefined && memberOf(state, accountId) !== undefined;
  }

  /**
   * A change from a member (or from another device of this account). The pairwise sender must
   * be its author: a member cannot put words in another's mouth.
   */
  async receive(sender: Address, change: GroupChange): Promise<ReceiveOutcome['status']> {
    if (change.author !== sender.accountId) {
      this.deps.logger.log('warn', 'group change refused', 'sender is not its author');
      return 'refused';
    }
    const self = this.deps.self().accountId;
    const group = await this.deps.store.group(change.state.groupId);
    const result = receiveChange(group?.log, change, self);
    if (result.outcome.status === 'refused') {
      this.deps.logger.log('warn', 'group change refused', reasonOf(result.outcome.error));
      return 'refused';
    }
    if (!result.log || result.outcome.status === 'duplicate') return result.outcome.status;
    const before = group && currentState(group.log);
    let log: GroupLog = result.log;
    // Our own change that lost a tie is made again on top of the winner, and sent.
    const again = reapplyLost(log, self);
    log = again.log;
    await this.deps.store.saveGroup({
      groupId: change.state.groupId,
      log,
      expireSeconds: group?.expireSeconds ?? 0,
    });
    const after = currentState(log);
    if (gone(before, after) && after && memberOf(after, self)) {
      await this.deps.membersGone(change.state.groupId);
    }
    for (const made of again.changes) {
      const base = log.changes[made.base]?.state;
      await this.distribute(made, base);
    }
    if (result.outcome.status === 'applied' || again.changes.length > 0) {
      this.deps.emit({ type: 'group', groupId: change.state.groupId });
    }
    return result.outcome.status;
  }

  /**
   * Sends a change to every account in the states before and after it (a removed member learns
   * of its removal; a new one gets the state), and queues the copy for this account's other
   * devices. Each send goes through the outbox: one unreachable member does not stop the others,
   * and a send that fails for now is retried with the outbox.
   */
  private async distribute(change: GroupChange, base: GroupState | undefined): Promise<void> {
    const self = this.deps.self().accountId;
    const content: Content = {
      kind: 'group-change',
      id: this.deps.newId(),
      sentAt: this.deps.now(),
      change,
    };
    const plaintext = encodeContent(content);
    const recipients = new Set<AccountId>();
    for (const m of [...(base?.members ?? []), ...change.state.members]) {
      if (m.accountId !== self) recipients.add(m.accountId);
    }
    for (const recipient of recipients) {
      const id = `${content.id}.${recipient}`;
      await this.deps.store.addOutbox({
        id,
        recipient,
        content: plaintext,
        online: false,
        urgent: false,
        createdAt: this.deps.now(),
      });
      try {
        await this.deps.send(recipient, plaintext);
      } catch (error) {
        if (error instanceof ClientError && isRetryable(error)) {
          this.deps.logger.log('info', 'group change kept for later', reasonOf(error));
          continue;
        }
        this.deps.logger.log('warn', 'group change not delivered', reasonOf(error));
      }
      await this.deps.store.removeOutbox(id);
    }
    await this.deps.queueCopy(content);
  }
}
