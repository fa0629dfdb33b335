import type { Command } from 'commander';
import type { GroupSummary, PrivcommClient } from '@privcomm/client';
import { groupInfoJson, groupInfoText } from '../group-info.ts';
import { groupJson, Names } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { examples } from './common.ts';

const groupLine = (group: GroupSummary): string =>
  `${group.title}  (${group.members.length} member${group.members.length === 1 ? '' : 's'}${group.member ? (group.admin ? ', you are an admin' : '') : ', you are no longer a member'})  id ${group.groupId}`;

const names = async (client: PrivcommClient, self: string): Promise<Names> =>
  new Names(self, await client.contacts());

/**
 * group create, add, remove, promote, rename, leave, list and info. A group lives only on its
 * members' devices: every change goes to each member end to end encrypted, and the relay never
 * learns that the group exists.
 */
export const addGroupCommands = (program: Command, ctx: RunContext): void => {
  const group = program
    .command('group')
    .summary('create and manage groups')
    .description(
      'create groups and change their members, admins and title; up to 1,000 members.\n' +
        'A group is known only to its members: each change goes to them end to end encrypted,\n' +
        'and the relay cannot tell that the group exists. Only admins add, remove or promote;\n' +
        'any member may rename the group or leave it. GROUP is a group title or its id.',
    )
    .addHelpText(
      'after',
      examples(
        'privcomm group create Family bob carol',
        'privcomm group add Family dave',
        'privcomm group remove Family carol',
        'privcomm group list --json',
        'privcomm send --group Family "dinner at 8"',
      ),
    );

  /** Runs a change and prints the group after it. */
  const changeCommand = (
    name: string,
    description: string,
    example: string,
    change: (client: PrivcommClient, group: string, members: string[]) => Promise<GroupSummary>,
    withMembers = true,
  ): void => {
    const command = group.command(name).description(description).argument('<group>', 'title or id');
    if (withMembers) command.argument('<members...>', 'contact names or account ids');
    command.addHelpText('after', examples(example)).action(async (...args: unknown[]) => {
      const cmd = args.at(-1) as Command;
      const [groupArg, membersArg] = args as [string, string[] | undefined];
      const { client, self } = await ctx.openAccount(cmd);
      const changed = await change(client, groupArg, withMembers ? (membersArg ?? []) : []);
      ctx.out.result(
        { ...groupJson(changed, await names(client, self.accountId)), change: name },
        `${groupLine(changed)}: told every member`,
      );
    });
  };

  group
    .command('create')
    .description('create a group with you as its admin and tell its members')
    .argument('<title>', 'the group title (up to 128 characters)')
    .argument('<members...>', 'contact names or account ids')
    .addHelpText('after', examples('privcomm group create Family bob carol'))
    .action(async (title: string, members: string[], _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const created = await client.createGroup(title, members);
      ctx.out.result(
        { ...groupJson(created, await names(client, self.accountId)), change: 'create' },
        `Created ${groupLine(created)}`,
      );
    });

  changeCommand('add', 'add members (admins only)', 'privcomm group add Family dave', (c, g, m) =>
    c.addToGroup(g, m),
  );
  changeCommand(
    'remove',
    'remove members (admins only); everyone makes a new sender key, so they cannot read what follows',
    'privcomm group remove Family carol',
    (c, g, m) => c.removeFromGroup(g, m),
  );
  changeCommand(
    'promote',
    'make members admins (admins only)',
    'privcomm group promote Family bob',
    (c, g, m) => c.promoteInGroup(g, m),
  );
  changeCommand(
    'leave',
    'leave a group (its history stays on this device)',
    'privcomm group leave Family',
    (c, g) => c.leaveGroup(g),
    false,
  );

  group
    .command('rename')
    .description('change the title of a group (any member)')
    .argument('<group>', 'title or id')
    .argument('<title>', 'the new title')
    .addHelpText('after', examples('privcomm group rename Family "The Family"'))
    .action(async (groupArg: string, title: string, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const changed = await client.setGroupTitle(groupArg, title);
      ctx.out.result(
        { ...groupJson(changed, await names(client, self.accountId)), change: 'rename' },
        `Renamed: ${groupLine(changed)}`,
      );
    });

  group
    .command('list')
    .description('list the groups on this device (also those you left)')
    .addHelpText('after', examples('privcomm group list', 'privcomm group list --json'))
    .action(async (_o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const list = await client.groups();
      const labels = await names(client, self.accountId);
      if (list.length === 0 && !ctx.out.json) ctx.out.status('No groups yet.');
      for (const item of list) ctx.out.result(groupJson(item, labels), groupLine(item));
    });

  group
    .command('info')
    .description(
      "show a group: its title, version, members and admins, and each member's safety number state (verified, not verified, changed)",
    )
    .argument('<group>', 'title or id')
    .addHelpText('after', examples('privcomm group info Family --json'))
    .action(async (groupArg: string, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const info = await client.groupInfo(groupArg);
      const labels = await names(client, self.accountId);
      const json = await groupInfoJson(client, info, labels);
      ctx.out.result(json, groupInfoText(info, json, labels));
    });
};
