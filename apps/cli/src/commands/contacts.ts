import type { Command } from 'commander';
import { ClientError, normalizePhoneNumber, parseContactLink } from '@privcomm/client';
import { CliError, UsageError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { isAccountId } from '@privcomm/wire';
import { examples } from './common.ts';
import { findAccountByPhone, syncAddressBook } from './contacts-phone.ts';
import { COUNTRY_OPTION, countryFor } from './phone.ts';
/** contacts add, list and sync: names for account ids (found by phone number if need be). */
export const addContactCommands = (program: Command, ctx: RunContext): void => {
  const contacts = program
    .command('contacts')
    .summary('add and list contacts')
    .description('manage contacts (names for account ids)')
    .addHelpText(
      'after',
      examples(
        'privcomm contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11',
        'privcomm contacts add carol --phone +15551230002',
        'privcomm contacts add bob --link "privcomm://contact/2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11?relay=https%3A%2F%2Frelay.example.org#Bob"',
        'privcomm contacts link',
        'privcomm contacts list',
        'privcomm contacts sync',
        'privcomm contacts sync ~/contacts.vcf',
      ),
    );

  contacts
    .command('add')
    .description(
      'add a contact by account id or contact link (--link; no network) or by phone number (--phone), or rename one',
    )
    .argument('<name>', 'the name you will use for them in commands')
    .argument('[accountId]', 'their account id (they see it with "privcomm whoami")')
    .option(
      '--phone <number>',
      'find them by phone number instead (they must have published it with "privcomm phone set")',
    )
    .option('--link <link>', 'their contact link (they see it with "privcomm contacts link")')
    .option(...COUNTRY_OPTION)
    .addHelpText(
      'after',
      examples(
        'privcomm contacts add bob 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11',
        'privcomm contacts add carol --phone +15551230002',
        'privcomm contacts add dave --phone "020 7946 0018" --country GB',
      ),
    )
    .action(
      async (
        name: string,
        accountId: string | undefined,
        options: { phone?: string; link?: string; country?: string },
        command: Command,
      ) => {
        const trimmed = name.trim();
        if (trimmed === '') throw new UsageError('the contact name is empty');
        if (isAccountId(trimmed.toLowerCase()))
          throw new UsageError('a contact name cannot be an account id; pick a name');
        const ways = [accountId, options.phone, options.link].filter((w) => w !== undefined);
        if (ways.length !== 1)
          throw new UsageError('give either their account id, --phone NUMBER or --link LINK');
        // The core's parser: the one definition of the format, with its own clear refusals.
        let link;
        try {
          link = options.link === undefined ? undefined : parseContactLink(options.link);
        } catch (error) {
          if (error instanceof ClientError) throw new UsageError(error.message);
          throw error;
        }
        const number =
          options.phone === undefined
            ? undefined
            : normalizePhoneNumber(options.phone, countryFor(ctx, options));
        const given = link?.accountId ?? accountId?.trim().toLowerCase();
        if (given !== undefined && !isAccountId(given))
          throw new UsageError(
            `"${accountId}" is not an account id (like 2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11)`,
          );
        const opened = await ctx.openAccount(command);
        const { client, self } = opened;
        const id =
          number === undefined
            ? (given as string)
            : await findAccountByPhone(ctx, client, opened.dir, number);
        if (id === self.accountId)
          throw new CliError(
            number === undefined ? 'that is your own account id' : 'that is your own number',
            'SELF',
          );
        const clash = (await client.contacts()).find(
          (c) => c.name === trimmed && c.accountId !== id,
        );
        if (clash)
          throw new CliError(
            `a contact named "${trimmed}" already exists (${clash.accountId}); pick another name`,
            'CONTACT_EXISTS',
          );
        const contact =
          options.link === undefined
            ? await client.addContact(trimmed, id)
            : await client.addContactFromLink(options.link, trimmed);
        ctx.out.result(
          {
            name: contact.name,
            accountId: contact.accountId,
            expireSeconds: contact.expireSeconds,
          },
          `Added ${contact.name} (${contact.accountId}).`,
        );
      },
    );

  contacts
    .command('link')
    .description('print your contact link, to give to people who want to add you (no network)')
    .addHelpText('after', examples('privcomm contacts link', 'privcomm contacts link --json'))
    .action(async (_options: unknown, command: Command) => {
      const { client } = await ctx.openAccount(command);
      const link = client.contactLink();
      ctx.out.result({ link }, link);
    });

  contacts
    .command('list')
    .description('list contacts, with their verification state (no network)')
    .addHelpText('after', examples('privcomm contacts list --json'))
    .action(async (_options: unknown, command: Command) => {
      const { client } = await ctx.openAccount(command);
      const all = await client.contacts();
      if (all.length === 0 && !ctx.out.json)
        ctx.out.status('No contacts yet: add one with "privcomm contacts add NAME ACCOUNT_ID".');
      for (const contact of all) {
        const identity = await client.identity(contact.accountId);
        const verified = identity?.verified ?? false;
        const identityChanged = identity?.changed ?? false;
        ctx.out.result(
          {
            name: contact.name,
            accountId: contact.accountId,
            expireSeconds: contact.expireSeconds,
            verified,
            identityChanged,
          },
          `${contact.name}  ${contact.accountId}${verified ? '  verified' : ''}${identityChanged ? '  SAFETY NUMBER CHANGED' : ''}${contact.expireSeconds > 0 ? `  disappearing after ${contact.expireSeconds} s` : ''}`,
        );
      }
    });

  contacts
    .command('sync')
    .description(
      "without FILE: send your contacts' names to your other devices (a newly linked device asks for them by itself). With FILE: find the people of a CSV or vCard address book by phone number and add those on this relay as contacts",
    )
    .argument(
      '[file]',
      'a CSV (a name column and phone columns) or vCard (.vcf) address book to look up',
    )
    .option('--link <link>', 'their contact link (they see it with "privcomm contacts link")')
    .option(...COUNTRY_OPTION)
    .addHelpText(
      'after',
      examples(
        'privcomm contacts sync',
        'privcomm contacts sync contacts.vcf',
        'privcomm contacts sync contacts.csv --country GB --json',
      ),
    )
    .action(async (file: string | undefined, options: { country?: string }, command: Command) => {
      if (file !== undefined) {
        await syncAddressBook(ctx, command, file, options);
        return;
      }
      const { client } = await ctx.openAccount(command);
      const count = (await client.contacts()).length;
      if (count === 0) {
        ctx.out.result({ type: 'contacts-sent', sent: 0 }, 'No contacts to send.');
        return;
      }
      const sent = await client.syncContacts();
      ctx.out.result(
        { type: 'contacts-sent', sent },
        sent === 0
          ? 'No other device to send them to: link one with "privcomm devices add LINK_CODE".'
          : `Sent ${sent} contact${sent === 1 ? '' : 's'} to your other devices: they get them with their next "receive" or "listen".`,
      );
    });
};
