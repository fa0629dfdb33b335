import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AccountId } from '@privcomm/wire';
import {
  GroupError,
  MAX_GROUP_MEMBERS,
  createGroup,
  currentState,
  makeChange,
  receiveChange,
  reapplyLost,
  stateHash,
  validateChange,
  type GroupChange,
  type GroupIntent,
  type GroupLog,
  type GroupState,
} from '../src/groups/index.ts';
import { accountIdOf } from '../src/testing/ids.ts';

const account = (n: number): AccountId =>
  accountIdOf(`00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`);
const [alice, bob, carol, dave, erin, frank] = [1, 2, 3, 4, 5, 6].map(account) as [
  AccountId,
  AccountId,
  AccountId,
  AccountId,
  AccountId,
  AccountId,
];
const GROUP = '0123456789abcdef0123456789abcdef';

/** Receives changes in order into one device's log; returns the log and each outcome. */
const deliver = (changes: readonly GroupChange[], self: AccountId, start?: GroupLog) => {
  let log = start;
  const outcomes: string[] = [];
  for (const change of changes) {
    const result = receiveChange(log, change, self);
    log = result.log;
    outcomes.push(
      result.outcome.status === 'refused'
        ? `refused:${result.outcome.error.code}`
        : result.outcome.status,
    );
  }
  return { log, outcomes };
};

const state = (log: GroupLog | undefined): GroupState => {
  const s = log && currentState(log);
  if (!s) throw new Error('no current state');
  return s;
};

const created = createGroup(GROUP, alice, 'Family', [bob, carol]);

describe('group changes', () => {
  it('a creation makes its author the one admin and everyone a founder', () => {
    expect(created.state).toEqual({
      groupId: GROUP,
      title: 'Family',
      version: 1,
      members: [
        { accountId: alice, admin: true, since: 1 },
        { accountId: bob, admin: false, since: 1 },
        { accountId: carol, admin: false, since: 1 },
      ],
    });
    expect(created.base).toBe('');
  });

  it('only an admin changes the membership; any member renames; anyone leaves', () => {
    const s = created.state;
    expect(() => makeChange(s, bob, { action: 'add', accounts: [dave] })).toThrow(
      expect.objectContaining({ code: 'NOT_ALLOWED' }),
    );
    expect(() => makeChange(s, bob, { action: 'remove', accounts: [carol] })).toThrow(
      expect.objectContaining({ code: 'NOT_ALLOWED' }),
    );
    expect(() => makeChange(s, bob, { action: 'promote', accounts: [bob] })).toThrow(
      expect.objectContaining({ code: 'NOT_ALLOWED' }),
    );
    expect(() => makeChange(s, dave, { action: 'title', title: 'x' })).toThrow(
      expect.objectContaining({ code: 'NOT_ALLOWED' }),
    );
    expect(makeChange(s, bob, { action: 'title', title: 'Renamed' }).state.title).toBe('Renamed');
    const left = makeChange(s, bob, { action: 'leave' });
    expect(left.state.members.map((m) => m.accountId)).toEqual([alice, carol]);
    expect(left.state.version).toBe(2);
    expect(left.base).toBe(stateHash(s));
  });

  it('the last admin leaving makes the remaining member with the lowest id an admin', () => {
    const left = makeChange(created.state, alice, { action: 'leave' });
    expect(left.state.members).toEqual([
      { accountId: bob, admin: true, since: 1 },
      { accountId: carol, admin: false, since: 1 },
    ]);
    // Any other choice is refused: receivers check the rule.
    const forged: GroupChange = {
      ...left,
      state: {
        ...left.state,
        members: [
          { accountId: bob, admin: false, since: 1 },
          { accountId: carol, admin: true, since: 1 },
        ],
      },
    };
    expect(() => validateChange(forged, created.state)).toThrow(GroupError);
  });

  it('refuses a change that does more than its action says', () => {
    const add = makeChange(created.state, alice, { action: 'add', accounts: [dave] });
    // An "add" that also makes Bob an admin.
    const sneaky: GroupChange = {
      ...add,
      state: {
        ...add.state,
        members: add.state.members.map((m) => (m.accountId === bob ? { ...m, admin: true } : m)),
      },
    };
    expect(() => validateChange(sneaky, created.state)).toThrow(
      expect.objectContaining({ code: 'INVALID_GROUP_CHANGE' }),
    );
    // A rename that removes Carol.
    const rename = makeChange(created.state, bob, { action: 'title', title: 'New' });
    const renameAndRemove: GroupChange = {
      ...rename,
      state: {
        ...rename.state,
        members: rename.state.members.filter((m) => m.accountId !== carol),
      },
    };
    expect(() => validateChange(renameAndRemove, created.state)).toThrow(GroupError);
    // A version that skips one.
    expect(() =>
      validateChange({ ...add, state: { ...add.state, version: 3 } }, created.state),
    ).toThrow(GroupError);
  });

  it(`refuses more than ${MAX_GROUP_MEMBERS} members with GROUP_TOO_LARGE`, () => {
    const many = Array.from({ length: MAX_GROUP_MEMBERS - 1 }, (_, i) => account(100 + i));
    const full = createGroup(GROUP, alice, 'Big', many);
    expect(full.state.members).toHaveLength(MAX_GROUP_MEMBERS);
    expect(() => makeChange(full.state, alice, { action: 'add', accounts: [dave] })).toThrow(
      expect.objectContaining({ code: 'GROUP_TOO_LARGE' }),
    );
    expect(() => createGroup(GROUP, alice, 'Too big', [...many, dave])).toThrow(
      expect.objectContaining({ code: 'GROUP_TOO_LARGE' }),
    );
  });
});

describe('a device’s group log', () => {
  it('applies valid changes in order and refuses the bad ones, without throwing', () => {
    const add = makeChange(created.state, alice, { action: 'add', accounts: [dave] });
    const byNonAdmin: GroupChange = {
      ...makeChange(created.state, alice, { action: 'remove', accounts: [carol] }),
      author: bob,
    };
    const byOutsider: GroupChange = {
      ...makeChange(created.state, alice, { action: 'title', title: 'Hijacked' }),
      author: frank,
    };
    const { log, outcomes } = deliver([created, add, byNonAdmin, byOutsider, add], bob);
    expect(outcomes).toEqual([
      'applied',
      'applied',
      'refused:NOT_ALLOWED',
      'refused:NOT_ALLOWED',
      'duplicate',
    ]);
    expect(state(log).members.map((m) => m.accountId)).toEqual([alice, bob, carol, dave]);
  });

  it('keeps a superseded version without making it current', () => {
    const v2 = makeChange(created.state, alice, { action: 'title', title: 'Two' });
    const v3 = makeChange(v2.state, alice, { action: 'title', title: 'Three' });
    // Bob renames on version 1, not having seen version 2 yet.
    const late = makeChange(created.state, bob, { action: 'title', title: 'Late' });
    const { log, outcomes } = deliver([created, v2, v3, late], carol);
    expect(outcomes).toEqual(['applied', 'applied', 'applied', 'superseded']);
    expect(state(log).title).toBe('Three');
  });

  it('an offline member catches up from changes in any order (they wait for their base)', () => {
    const v2 = makeChange(created.state, alice, { action: 'add', accounts: [dave] });
    const v3 = makeChange(v2.state, alice, { action: 'promote', accounts: [dave] });
    const v4 = makeChange(v3.state, dave, { action: 'remove', accounts: [bob] });
    const v5 = makeChange(v4.state, carol, { action: 'title', title: 'Caught up' });
    const { log, outcomes } = deliver([v5, v3, created, v4, v2], carol);
    expect(outcomes).toEqual(['pending', 'pending', 'applied', 'pending', 'applied']);
    expect(state(log)).toEqual(v5.state);
    expect(log?.pending).toEqual([]);
  });

  it('a new member starts from the change that added it, and trusts its author', () => {
    const v2 = makeChange(created.state, alice, { action: 'title', title: 'Before Dave' });
    const v3 = makeChange(v2.state, alice, { action: 'add', accounts: [dave] });
    const v4 = makeChange(v3.state, bob, { action: 'title', title: 'With Dave' });
    const { log, outcomes } = deliver([v4, v3], dave);
    expect(outcomes).toEqual(['pending', 'applied']);
    expect(state(log).title).toBe('With Dave');
    // The add names Dave since version 3: a forged "add" by a non-admin cannot start a log.
    const forged: GroupChange = { ...v3, author: bob };
    expect(deliver([forged], dave).log && currentState(deliver([forged], dave).log!)).toBe(
      undefined,
    );
  });

  it('a removed member keeps the removal and sees no later state; added again, it restarts', () => {
    const v2 = makeChange(created.state, alice, { action: 'remove', accounts: [carol] });
    const v3 = makeChange(v2.state, alice, { action: 'title', title: 'Without Carol' });
    const v4 = makeChange(v3.state, alice, { action: 'add', accounts: [carol] });
    const first = deliver([created, v2], carol);
    expect(state(first.log).members.some((m) => m.accountId === carol)).toBe(false);
    // v3 was never sent to Carol; v4 was, and starts her history again.
    const again = deliver([v4], carol, first.log);
    expect(again.outcomes).toEqual(['applied']);
    expect(state(again.log).title).toBe('Without Carol');
  });

  it('a second creation under a known id is refused', () => {
    const forged = createGroup(GROUP, bob, 'Mine now', [alice, carol]);
    expect(deliver([created, forged], carol).outcomes).toEqual(['applied', 'refused:NOT_ALLOWED']);
  });

  it('concurrent changes at one version: the lower hash wins, the loser reapplies on top', () => {
    const promoted = makeChange(created.state, alice, { action: 'promote', accounts: [bob] });
    const byAlice = makeChange(promoted.state, alice, { action: 'add', accounts: [dave] });
    const byBob = makeChange(promoted.state, bob, { action: 'add', accounts: [erin] });
    const [winner, loser] =
      stateHash(byAlice.state) < stateHash(byBob.state) ? [byAlice, byBob] : [byBob, byAlice];
    const loserAccount = loser.author;
    const { log } = deliver([created, promoted, loser, winner], loserAccount);
    expect(state(log)).toEqual(winner.state);
    const { log: after, changes } = reapplyLost(log!, loserAccount);
    expect(changes).toHaveLength(1);
    expect(changes[0]?.state.version).toBe(winner.state.version + 1);
    const members = state(after).members.map((m) => m.accountId);
    expect(members).toEqual(expect.arrayContaining([dave, erin]));
    // Reapplied once only.
    expect(reapplyLost(after, loserAccount).changes).toEqual([]);
    // Everyone else converges on the same state once they get the reapplied change.
    const other = deliver([winner, changes[0]!, created, loser, promoted], carol);
    expect(state(other.log)).toEqual(state(after));
  });

  it('a member whose add lost to a concurrent change catches up from the add made again', () => {
    const promoted = makeChange(created.state, alice, { action: 'promote', accounts: [bob] });
    const addsDave = makeChange(promoted.state, alice, { action: 'add', accounts: [dave] });
    // Bob's concurrent rename wins or loses by hash; make Alice's add the loser.
    const titles = Array.from({ length: 32 }, (_, n) =>
      makeChange(promoted.state, bob, { action: 'title', title: `Title ${n}` }),
    );
    const winner = titles.find((t) => stateHash(t.state) < stateHash(addsDave.state));
    if (!winner) throw new Error('no rename hashes below the add: pick other titles');
    const alices = deliver([created, promoted, addsDave, winner], alice);
    const { changes } = reapplyLost(alices.log!, alice);
    const again = changes[0]!;
    expect(again.action).toBe('add');
    // Dave got Alice's first add, never Bob's rename (Bob did not know Dave), then the add again.
    const daves = deliver([addsDave, again], dave);
    expect(daves.outcomes).toEqual(['applied', 'applied']);
    expect(state(daves.log)).toEqual(state(alices.log && reapplyLost(alices.log, alice).log));
    // Only from an admin Dave knows: the same add relabelled as Carol's (a founder, not an admin)
    // claims a state in which she is one, and waits for a base that never comes.
    const carols = makeChange(
      {
        ...winner.state,
        members: winner.state.members.map((m) =>
          m.accountId === carol ? { ...m, admin: true } : m,
        ),
      },
      carol,
      { action: 'add', accounts: [dave] },
    );
    expect(deliver([addsDave, carols], dave).outcomes).toEqual(['applied', 'pending']);
  });
});

/**
 * Property: whatever order the same set of changes arrives in, every device that was a founder
 * and stayed a member ends with the same state (and the same as delivering them in the order
 * they were made). The changes are generated as concurrent devices make them: each on a random
 * valid state of the history so far, by a random member or outsider, with forgeries (a change
 * made by an admin and relabelled with a non-admin author) mixed in.
 */
describe('convergence', () => {
  const people = [alice, bob, carol, dave, erin, frank];
  /** Alice and Bob stay in the group: they are the devices whose states are compared. */
  const stayers = new Set([alice, bob]);

  const arbitraryHistory = fc
    .array(
      fc.record({
        base: fc.nat(),
        author: fc.nat({ max: people.length - 1 }),
        action: fc.constantFrom('add', 'remove', 'promote', 'leave', 'title'),
        target: fc.nat({ max: people.length - 1 }),
        title: fc.constantFrom('A', 'B', 'C'),
        forge: fc.boolean(),
      }),
      { minLength: 1, maxLength: 24 },
    )
    .map((steps) => {
      const start = createGroup(GROUP, alice, 'Start', [bob, carol]);
      const valid: GroupChange[] = [start];
      const all: GroupChange[] = [start];
      for (const step of steps) {
        const base = valid[step.base % valid.length]!;
        const author = people[step.author]!;
        const target = people[step.target]!;
        if (stayers.has(target) && step.action === 'remove') continue;
        if (stayers.has(author) && step.action === 'leave') continue;
        const intent: GroupIntent =
          step.action === 'title'
            ? { action: 'title', title: step.title }
            : step.action === 'leave'
              ? { action: 'leave' }
              : { action: step.action, accounts: [target] };
        try {
          const change = makeChange(base.state, author, intent);
          valid.push(change);
          all.push(change);
        } catch (error) {
          if (!(error instanceof GroupError)) throw error;
          if (!step.forge || error.code !== 'NOT_ALLOWED') continue;
          // The same change made by the first admin, claimed by the one who may not make it.
          const admin = base.state.members.find((m) => m.admin)!.accountId;
          if (step.action === 'leave' || (step.action === 'remove' && target === admin)) continue;
          try {
            all.push({ ...makeChange(base.state, admin, intent), author });
          } catch (inner) {
            if (!(inner instanceof GroupError)) throw inner;
          }
        }
      }
      return all;
    });

  it('any delivery order of the same changes gives every staying founder the same state', () => {
    fc.assert(
      fc.property(
        arbitraryHistory.chain((changes) =>
          fc.tuple(
            fc.constant(changes),
            fc.shuffledSubarray(changes, { minLength: changes.length }),
          ),
        ),
        ([inOrder, shuffled]) => {
          const expected = state(deliver(inOrder, alice).log);
          for (const self of stayers) {
            expect(state(deliver(shuffled, self).log)).toEqual(expected);
            expect(state(deliver(inOrder, self).log)).toEqual(expected);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a forged change never becomes the state', () => {
    fc.assert(
      fc.property(arbitraryHistory, (changes) => {
        const { log } = deliver(changes, alice);
        for (const change of Object.values(log!.changes)) {
          const base = change.action === 'create' ? undefined : log!.changes[change.base]?.state;
          if (change.action !== 'create' && base === undefined) continue; // pruned history
          expect(() => validateChange(change, base)).not.toThrow();
        }
      }),
      { numRuns: 200 },
    );
  });
});
