import { describe, expect, it } from 'vitest';
import { dumpDatabase } from '@privcomm/server/testing';
import { CLOSED_PORT, expectOneErrorLine, runCli } from './support/cli.ts';
import { cli, json, peopleOnRelay, receive } from './support/people.ts';

/**
 * Groups through the `privcomm` binary and a real relay process: five people (Bob with two
 * devices) create a group, add, promote and remove members while one of them is offline, and
 * every device converges on the same state. The steps build on each other, so they run in order.
 */

// Alice knows everyone by name; the others use account ids.
const setup = peopleOnRelay(
  ['alice', 'bob', 'carol', 'dave', 'erin'],
  ['bob', 'carol', 'dave', 'erin'],
);
const { profiles, ids } = setup;

/** The group as a device sees it (group info --json). */
const info = async (profile: string, group = 'Family') =>
  (await json(profile, 'group', 'info', group))[0];

const memberIds = (group: { members: { accountId: string; admin: boolean }[] }) =>
  group.members.map((m) => `${m.accountId}${m.admin ? ' admin' : ''}`);

describe('groups between five people through the CLI', () => {
  let groupId: string;

  it('creates a group; every member device (both of Bob’s) gets it', async () => {
    const [created] = await json(
      profiles.alice,
      'group',
      'create',
      'Family',
      'bob',
      'carol',
      'dave',
    );
    expect(created).toMatchObject({ type: 'group', change: 'create', title: 'Family', version: 1 });
    groupId = created.groupId;
    expect(groupId).toMatch(/^[0-9a-f]{32}$/);
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.dave]) {
      const events = await receive(profile);
      expect(events).toContainEqual({ type: 'group-changed', groupId });
      expect(memberIds(await info(profile))).toEqual(memberIds(created));
    }
    const [listed] = await json(profiles.carol, 'group', 'list');
    expect(listed).toMatchObject({ groupId, title: 'Family', member: true, admin: false });
  });

  it('talks: one upload reaches every member device; history --group shows who said what', async () => {
    const [sent] = await json(profiles.alice, 'send', '--group', 'Family', 'hello family');
    expect(sent).toMatchObject({ type: 'sent', group: groupId, title: 'Family', status: 'sent' });
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.dave]) {
      const got = (await receive(profile)).filter((o) => o.type === 'message');
      expect(got, profile).toEqual([
        expect.objectContaining({ group: groupId, from: ids.alice, text: 'hello family' }),
      ]);
    }
    await json(profiles.bob, 'send', '--group', groupId, 'hi from bob');
    // Bob's other device gets the copy when the sending device next connects.
    await receive(profiles.bob);
    await receive(profiles.bob2);
    await receive(profiles.alice);
    for (const [profile, direction] of [
      [profiles.alice, 'in'],
      [profiles.bob2, 'out'],
    ] as const) {
      // --no-read: the text form below shows Bob's message as still unread ("delivered").
      const history = await json(profile, 'history', '--group', 'Family', '--no-read');
      expect(
        history.map((m) => [m.from, m.text]),
        profile,
      ).toEqual([
        [ids.alice, 'hello family'],
        [ids.bob, 'hi from bob'],
      ]);
      expect(history[1].direction).toBe(direction);
    }
    const text = await cli(profiles.alice, 'history', '--group', 'Family');
    expect(text.stdout).toMatch(/bob → group Family \[delivered\]: hi from bob/);
  });

  it('a group send while the relay is down keeps the text and names its id', async () => {
    const server = `http://127.0.0.1:${CLOSED_PORT}`;
    const send = await cli(
      profiles.alice,
      '--server',
      server,
      'send',
      '--group',
      'Family',
      'kept for the family',
    );
    expect(send.code).toBe(1);
    const history = await json(profiles.alice, 'history', '--group', 'Family', '--no-read');
    const pending = history.filter((m) => m.status === 'sending');
    expect(pending).toMatchObject([{ direction: 'out', text: 'kept for the family' }]);
    expect(expectOneErrorLine(send)).toBe(
      `privcomm: cannot reach the relay at ${server}: connection refused. The message is kept in this profile (id ${pending[0].id}) and will be sent by the next "privcomm send", "receive" or "listen" that reaches the relay: do not send it again`,
    );
  });

  it('the next group send sends the kept text first, so the new one never overtakes it', async () => {
    await json(profiles.alice, 'send', '--group', 'Family', 'after the relay came back');
    const history = await json(profiles.alice, 'history', '--group', 'Family', '--no-read');
    expect(history.slice(-2).map((m) => [m.text, m.status])).toEqual([
      ['kept for the family', 'sent'],
      ['after the relay came back', 'sent'],
    ]);
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.dave]) {
      // Carol and Dave have not received Bob's "hi from bob" yet: Alice's texts only.
      const got = (await receive(profile)).filter(
        (o) => o.type === 'message' && o.from === ids.alice,
      );
      expect(
        got.map((m) => m.text),
        profile,
      ).toEqual(['kept for the family', 'after the relay came back']);
    }
  });

  it('refuses a change by a member who is not an admin, saying whom to ask', async () => {
    const result = await cli(profiles.bob, 'group', 'add', 'Family', ids.erin);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/only an admin.*ask an admin/);
  });

  it('changes while Carol is offline; she catches up from the queued changes', async () => {
    await json(profiles.alice, 'group', 'add', 'Family', 'erin');
    await json(profiles.alice, 'group', 'promote', 'Family', 'bob');
    await receive(profiles.bob);
    // Bob, now an admin, removes Dave from his second device.
    await receive(profiles.bob2);
    const [removed] = await json(profiles.bob2, 'group', 'remove', 'Family', ids.dave);
    expect(removed.version).toBe(4);
    // Erin, added a moment ago, starts from the change that added her, and renames the group.
    await receive(profiles.erin);
    await json(profiles.erin, 'group', 'rename', groupId, 'The Family');
    // Bob's first device learns of the removal from the copy his second device sends when it
    // next connects; until then Erin's rename (made on the removal) waits for it.
    for (const profile of [profiles.alice, profiles.bob2, profiles.bob]) await receive(profile);
    const expected = await info(profiles.alice, groupId);
    expect(expected).toMatchObject({ title: 'The Family', version: 5 });
    expect(memberIds(expected)).not.toContain(ids.dave);

    await receive(profiles.carol);
    await receive(profiles.erin);
    for (const profile of [profiles.bob, profiles.bob2, profiles.carol, profiles.erin]) {
      const seen = await info(profile, groupId);
      expect([seen.title, seen.version, memberIds(seen)], profile).toEqual([
        expected.title,
        expected.version,
        memberIds(expected),
      ]);
    }
  });

  it('the removed member knows and can no longer change the group', async () => {
    await receive(profiles.dave);
    const seen = await info(profiles.dave, groupId);
    expect(seen.member).toBe(false);
    const result = await cli(profiles.dave, 'group', 'rename', groupId, 'Mine');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no longer a member/);
  });

  it('after the removal, new messages do not reach the removed member', async () => {
    await json(profiles.alice, 'send', '--group', groupId, 'without dave');
    const daveGot = (await receive(profiles.dave)).filter((o) => o.type === 'message');
    expect(daveGot).toEqual([]);
    const carolGot = (await receive(profiles.carol)).filter((o) => o.type === 'message');
    expect(carolGot.map((m) => m.text)).toEqual(['without dave']);
    const daveHistory = await json(profiles.dave, 'history', '--group', groupId);
    expect(daveHistory.map((m) => m.text)).not.toContain('without dave');
  });

  it('a member leaves; the others see it', async () => {
    await json(profiles.carol, 'group', 'leave', groupId);
    await receive(profiles.alice);
    expect(memberIds(await info(profiles.alice, groupId))).not.toContain(ids.carol);
    expect((await info(profiles.carol, groupId)).member).toBe(false);
  });

  it('the relay’s database holds no group id, title or membership', async () => {
    const dump = await dumpDatabase(setup.databaseUrl);
    expect(dump).not.toContain(groupId);
    expect(dump).not.toContain('The Family');
    expect(dump).not.toMatch(/Family/);
    for (const plaintext of ['hello family', 'hi from bob', 'without dave']) {
      expect(dump).not.toContain(plaintext);
    }
  });

  it('explains itself in --help', async () => {
    const help = await runCli(['group', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('relay cannot tell that the group exists');
    for (const sub of ['create', 'add', 'remove', 'promote', 'rename', 'leave', 'list', 'info']) {
      expect(help.stdout).toContain(sub);
    }
  });
});
