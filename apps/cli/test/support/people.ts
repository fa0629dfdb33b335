import { afterAll, beforeAll, expect } from 'vitest';
import { createTestDatabase, spawnRelay, type RelayProcess } from '@privcomm/server/testing';
import { removeTempDirs, RunningCli, runCli, tempDir, type CliResult } from './cli.ts';

/**
 * Several people, one profile each, for tests that run the binary step by step (groups): the
 * commands as each of them, with copies to one's own devices due at once (they still go out
 * only when the sending profile next connects).
 */
const env = { PRIVCOMM_SYNC_DELAY: '0' };

export const cli = (profile: string, ...args: string[]): Promise<CliResult> =>
  runCli(['--profile', profile, ...args], { env });

/** A command that must succeed, with --json: its objects. */
export const json = async (profile: string, ...args: string[]): Promise<any[]> => {
  const result = await cli(profile, '--json', ...args);
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.json;
};

/** What arrived, once the queue is empty and a second passed without more. */
export const receive = (profile: string) => json(profile, 'receive', '--timeout', '1');

/** A profile directory per person, and one for Bob's second device (`bob2`). */
export const profilesFor = <const P extends readonly string[]>(
  people: P,
): Record<P[number] | 'bob2', string> =>
  Object.fromEntries([...people, 'bob2'].map((name) => [name, tempDir(name)])) as Record<
    P[number] | 'bob2',
    string
  >;

/** Registers each person on the relay under their name; their account ids by name. */
export const registerPeople = async <const P extends readonly string[]>(
  server: string,
  people: P,
  profiles: Record<P[number], string>,
): Promise<Record<P[number], string>> => {
  const registered = await Promise.all(
    people.map((name: P[number]) =>
      json(profiles[name], '--server', server, 'register', '--name', name),
    ),
  );
  return Object.fromEntries(people.map((name, i) => [name, registered[i]![0].accountId])) as Record<
    P[number],
    string
  >;
};

/** Links a new profile as a device of `primary`'s account (link, then devices add). */
export const linkDevice = async (server: string, primary: string, device: string) => {
  const linking = RunningCli.start(['--profile', device, '--server', server, '--json', 'link']);
  try {
    const { linkCode } = await linking.untilJson((l) => l.type === 'link-code', 'link code');
    await json(primary, 'devices', 'add', linkCode);
    expect(await linking.wait()).toBe(0);
  } finally {
    await linking.stop('SIGKILL');
  }
};

/**
 * A relay process on a test database of its own, with each person registered on it, Bob's
 * second device linked and `aliceKnows` in Alice's contacts by name; made before the file's
 * first test and removed after its last. `ids` and `databaseUrl` are filled in then.
 */
export const peopleOnRelay = <const P extends readonly ['alice', 'bob', ...string[]]>(
  people: P,
  aliceKnows: readonly P[number][],
) => {
  const setup = {
    // P starts with alice and bob, which TypeScript does not see in P[number].
    profiles: profilesFor(people) as Record<P[number] | 'alice' | 'bob' | 'bob2', string>,
    ids: {} as Record<P[number], string>,
    databaseUrl: '',
  };
  let database: { drop: () => Promise<void> } | undefined;
  let relay: RelayProcess | undefined;
  beforeAll(async () => {
    const created = await createTestDatabase();
    database = created;
    setup.databaseUrl = created.url;
    const started = await spawnRelay(created.url);
    relay = started;
    const { profiles, ids } = setup;
    Object.assign(ids, await registerPeople(started.url, people, profiles));
    for (const name of aliceKnows) await json(profiles.alice, 'contacts', 'add', name, ids[name]);
    await linkDevice(started.url, profiles.bob, profiles.bob2);
  }, 120_000);
  afterAll(async () => {
    await relay?.stop();
    await database?.drop();
    removeTempDirs();
  });
  return setup;
};
