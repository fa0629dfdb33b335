import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dumpDatabase } from '@privcomm/server/testing';
import { cli, json, peopleOnRelay, receive } from './support/people.ts';
import { passOffKeys } from './support/identity-swap.ts';

/**
 * Receipts, per-member safety numbers and retries in a group, through the `privcomm` binary and
 * a real relay process: Alice writes to Bob (two devices), Carol and Erin (not her contact). The
 * steps build on each other, so they run in order.
 */

// Erin is no contact of Alice's: she is in the group by her account id.
const setup = peopleOnRelay(['alice', 'bob', 'carol', 'erin', 'mallory'], ['bob', 'carol']);
const { profiles, ids } = setup;
let db: pg.Client;

const messagesIn = async (profile: string) =>
  (await receive(profile)).filter((o) => o.type === 'message');

/** Each member's safety state in `group info --json` ("self" for this account). */
const safety = async () => {
  const [info] = await json(profiles.alice, 'group', 'info', 'Team');
  return Object.fromEntries(
    info.members.map((m: { accountId: string; safety?: string }) => [
      m.accountId,
      m.safety ?? 'self',
    ]),
  );
};

/** Alice's copy of one of her group messages (history --json, not marking anything read). */
const aliceSees = async (id: string) =>
  (await json(profiles.alice, 'history', '--group', 'Team', '--no-read')).find((m) => m.id === id);

beforeAll(async () => {
  db = new pg.Client({ connectionString: setup.databaseUrl });
  await db.connect();
});

afterAll(async () => {
  await db?.end();
});

describe('receipts, safety numbers and retries in a group', () => {
  let groupId: string;
  let hello: string;

  it('delivery receipts reach the author from each member, Bob once for his two devices', async () => {
    const [created] = await json(
      profiles.alice,
      'group',
      'create',
      'Team',
      'bob',
      'carol',
      ids.erin,
    );
    groupId = created.groupId;
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.erin])
      await receive(profile);

    const [sent] = await json(profiles.alice, 'send', '--group', 'Team', 'hello team');
    hello = sent.id;
    expect(sent).toMatchObject({
      status: 'sent',
      recipients: { [ids.bob]: 'sent', [ids.carol]: 'sent', [ids.erin]: 'sent' },
    });
    // Each member device stores it and sends its receipt pairwise to Alice as it disconnects.
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.erin]) {
      expect(
        (await messagesIn(profile)).map((m) => m.text),
        profile,
      ).toEqual(['hello team']);
    }
    const receipts = (await receive(profiles.alice)).filter((o) => o.type === 'receipt');
    // Bob's second device's receipt finds Bob already counted: no second event, no second count.
    expect(receipts.map((r) => [r.from, r.receipt, r.group, r.messageIds]).sort()).toEqual(
      [ids.bob, ids.carol, ids.erin].sort().map((from) => [from, 'delivered', groupId, [hello]]),
    );
    expect(await aliceSees(hello)).toMatchObject({
      status: 'delivered',
      receipts: { members: 3, delivered: 3, read: 0 },
    });
  });

  it('read receipts when members read (history --group), shown as "read by N of M"', async () => {
    await json(profiles.bob2, 'history', '--group', 'Team');
    await json(profiles.carol, 'history', '--group', 'Team');
    await json(profiles.erin, 'history', '--group', 'Team', '--no-read');
    const reads = (await receive(profiles.alice)).filter((o) => o.type === 'receipt');
    expect(reads.map((r) => [r.from, r.receipt]).sort()).toEqual(
      [ids.bob, ids.carol].sort().map((from) => [from, 'read']),
    );
    const seen = await aliceSees(hello);
    expect(seen.status).toBe('delivered');
    expect(seen.receipts).toEqual({ members: 3, delivered: 3, read: 2 });
    expect(seen.recipients).toEqual(
      expect.arrayContaining([
        { accountId: ids.bob, contact: 'bob', status: 'read' },
        { accountId: ids.carol, contact: 'carol', status: 'read' },
        { accountId: ids.erin, status: 'delivered' },
      ]),
    );
    const text = await cli(profiles.alice, 'history', '--group', 'Team', '--no-read');
    expect(text.stdout).toMatch(
      /you → group Team \[delivered to 3 of 3, read by 2 of 3\]: hello team/,
    );
  });

  it('group info shows each member’s safety number state; a member who is no contact can be verified', async () => {
    await json(profiles.alice, 'verify', ids.erin);
    expect(await safety()).toEqual({
      [ids.alice]: 'self',
      [ids.bob]: 'not-verified',
      [ids.carol]: 'not-verified',
      [ids.erin]: 'verified',
    });
    const text = await cli(profiles.alice, 'group', 'info', 'Team');
    expect(text.stdout).toContain(`  ${ids.erin}  verified\n`);
    expect(text.stdout).toContain('  bob  not verified\n');
    // The first member not verified, in the group's order (by account id).
    expect(text.stdout).toMatch(
      /Compare a safety number with: privcomm safety-number (bob|carol)\n/,
    );
  });

  let missed: string;

  it('a verified member whose key changed is left out (the others get it) and shows as changed', async () => {
    const restore = await passOffKeys(db, ids.erin, ids.mallory);
    const result = await cli(profiles.alice, '--json', 'send', '--group', 'Team', 'erin missed');
    expect(result.code).toBe(1);
    const [sent] = result.json;
    missed = sent.id;
    expect(sent).toMatchObject({
      status: 'failed',
      recipients: { [ids.bob]: 'sent', [ids.carol]: 'sent', [ids.erin]: 'failed' },
    });
    expect(result.stderr).toContain(`not sent to ${ids.erin} (1 of 3 members)`);
    expect(result.stderr).toContain(`privcomm retry --group Team ${missed}`);
    expect((await safety())[ids.erin]).toBe('changed');
    const info = await cli(profiles.alice, 'group', 'info', 'Team');
    expect(info.stdout).toContain(`  ${ids.erin}  safety number CHANGED\n`);
    expect(info.stdout).toContain(`privcomm safety-number ${ids.erin}\n`);
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol]) {
      expect(
        (await messagesIn(profile)).map((m) => m.text),
        profile,
      ).toEqual(['erin missed']);
    }
    // The attack ends: Erin's own keys are served again.
    await restore();
  });

  it('a retry after accepting the change reaches only the member who missed it, once', async () => {
    await json(profiles.alice, 'accept-identity', ids.erin);
    const [retried] = await json(profiles.alice, 'retry', '--group', 'Team', missed);
    expect(retried).toMatchObject({ type: 'retried', id: missed, status: 'sent' });
    expect(retried.recipients).toContainEqual({ accountId: ids.erin, status: 'sent' });

    // Nothing went to those who had it (not even a copy that they would de-duplicate).
    const queued = await db.query(
      'SELECT count(*)::int AS n FROM envelopes WHERE account_id = ANY($1)',
      [[ids.bob, ids.carol]],
    );
    expect(queued.rows[0].n).toBe(0);
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol]) {
      expect(await messagesIn(profile), profile).toEqual([]);
    }
    const erinGot = await messagesIn(profiles.erin);
    expect(erinGot.map((m) => [m.id, m.text])).toEqual([[missed, 'erin missed']]);
    const erinHistory = await json(profiles.erin, 'history', '--group', 'Team', '--no-read');
    expect(erinHistory.map((m) => m.text)).toEqual(['hello team', 'erin missed']);
    await receive(profiles.alice);
    expect(await aliceSees(missed)).toMatchObject({
      status: 'delivered',
      receipts: { members: 3, delivered: 3, read: 0 },
    });
    // Nothing left to retry.
    const again = await cli(profiles.alice, 'retry', '--group', 'Team', missed);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not waiting to be sent/);
  });

  it('the relay’s database holds no group id: receipts went pairwise, the group inside', async () => {
    const dump = await dumpDatabase(setup.databaseUrl);
    expect(dump).toContain(ids.alice);
    expect(dump).not.toContain(groupId);
    expect(dump).not.toContain('Team');
  });
});
