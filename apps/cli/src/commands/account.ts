import type { Command } from 'commander';
import { ClientError, normalizePhoneNumber } from '@privcomm/client';
import { CliError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { examples, readLine } from './common.ts';
import { COUNTRY_OPTION, countryFor, publishPhone } from './phone.ts';
/** register, whoami and delete-account: the account itself. */
export const addAccountCommands = (program: Command, ctx: RunContext): void => {
  program
    .command('register')
    .summary('create an account (this profile becomes its primary device)')
    .description('create a new account on the relay, with this profile as its primary device')
    .option('--invite <code>', 'invite code, if the relay registers by invitation')
    .option('--name <name>', 'a name for this account, shown on your linked devices')
    .option(
      '--phone <number>',
      'also publish your phone number, so that people who have it find you (see "privcomm phone")',
    )
    .option(...COUNTRY_OPTION)
    .addHelpText(
      'after',
      examples(
        'privcomm --profile /tmp/alice register',
        'privcomm --profile /tmp/alice register --phone +15551230001',
        'privcomm --server https://relay.example.org register --invite 6Y3ZQ9...',
      ),
    )
    .action(
      async (
        options: { invite?: string; name?: string; phone?: string; country?: string },
        command: Command,
      ) => {
        // Checked before anything is created: a wrong number must not leave an account behind.
        const number =
          options.phone === undefined
            ? undefined
            : normalizePhoneNumber(options.phone, countryFor(ctx, options));
        const { profile, server, dir, client } = await ctx.joinAccount(command, async (opened) => ({
          ...opened,
          profile: await opened.client.register({
            ...(options.invite === undefined ? {} : { inviteCode: options.invite }),
            ...(options.name === undefined ? {} : { name: options.name }),
          }),
        }));
        ctx.out.result(
          { accountId: profile.accountId, deviceId: profile.deviceId, server, profile: dir },
          [
            `Registered account ${profile.accountId} (device ${profile.deviceId}) on ${server}.`,
            `Give your account id to your contacts: ${profile.accountId}`,
          ],
        );
        if (number !== undefined) {
          const keyVersion = await publishPhone(client, dir, number);
          ctx.out.result(
            { type: 'phone-published', number, keyVersion },
            `Published ${number}: people who have your number can now find you.`,
          );
        }
      },
    );

  program
    .command('whoami')
    .summary("show this profile's account id, device and relay")
    .description("show this profile's account id, device id and relay (no network)")
    .addHelpText('after', examples('privcomm --profile /tmp/alice whoami --json'))
    .action(async (_options: unknown, command: Command) => {
      const { self, server, dir } = await ctx.openAccount(command);
      ctx.out.result(
        {
          accountId: self.accountId,
          deviceId: self.deviceId,
          server,
          profile: dir,
          ...(self.name === undefined ? {} : { name: self.name }),
        },
        [
          `account  ${self.accountId}`,
          `device   ${self.deviceId}${self.deviceId === 1 ? ' (primary)' : ''}`,
          `server   ${server}`,
          `profile  ${dir}`,
        ],
      );
    });

  program
    .command('delete-account')
    .summary('delete the account on the relay')
    .description(
      'on the primary device: delete the account and all its devices on the relay (local history stays in the profile)',
    )
    .option('--yes', 'do not ask for confirmation')
    .addHelpText('after', examples('privcomm delete-account', 'privcomm delete-account --yes'))
    .action(async (options: { yes?: boolean }, command: Command) => {
      const { client, self, dir } = await ctx.openAccount(command);
      if (self.deviceId !== 1)
        throw new ClientError('NOT_PRIMARY', 'only the primary device can delete the account');
      if (!options.yes) {
        ctx.io.stderr.write(
          `Delete account ${self.accountId} and all its devices on the relay? This cannot be undone. Type "delete" to confirm: `,
        );
        const answer = (await readLine(ctx.io.stdin)).trim();
        if (answer !== 'delete')
          throw new CliError(
            'not confirmed: nothing was deleted (pass --yes to skip the question)',
            'NOT_CONFIRMED',
          );
      }
      await client.deleteAccount();
      ctx.out.result(
        { type: 'account-deleted', accountId: self.accountId },
        `Deleted account ${self.accountId} on the relay. Local history remains in ${dir}; delete that directory to remove it.`,
      );
    });
};
