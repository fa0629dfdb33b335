import type { Command } from 'commander';
import { toBase64 } from '@privcomm/client';
import { CliError, UsageError } from '../errors.ts';
import { groupDigits } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { examples } from './common.ts';
/** safety-number, verify and accept-identity: who a contact's keys belong to. */
export const addIdentityCommands = (program: Command, ctx: RunContext): void => {
  program
    .command('safety-number')
    .summary('show the safety number with a contact')
    .description(
      'show the safety number with a contact: compare it with theirs (in person or on a call) to rule out interception',
    )
    .argument('<contact>', 'a contact name or an account id')
    .addHelpText(
      'after',
      '\nBoth sides see the same 60 digits. With --json, "scannable" is the QR-code form in base64.' +
        examples('privcomm safety-number bob', 'privcomm safety-number bob --json'),
    )
    .action(async (contact: string, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const accountId = await client.resolve(contact);
      const number = await client.safetyNumber(accountId);
      const identity = await client.identity(accountId);
      const labels = await ctx.names(client, self.accountId);
      const groups = groupDigits(number.digits);
      ctx.out.result(
        {
          accountId,
          ...(labels.contact(accountId) === undefined
            ? {}
            : { contact: labels.contact(accountId) }),
          safetyNumber: groups.join(' '),
          digits: number.digits,
          scannable: toBase64(number.scannable),
          verified: identity?.verified ?? false,
          identityChanged: identity?.changed ?? false,
        },
        [
          `Safety number with ${labels.label(accountId)}${identity?.verified ? ' (verified)' : ''}:`,
          ...[0, 4, 8].map((i) => `  ${groups.slice(i, i + 4).join(' ')}`),
          identity?.changed
            ? `It CHANGED recently. Compare it again before trusting it.`
            : `If it matches theirs, run: privcomm verify ${contact}`,
        ],
      );
    });

  program
    .command('verify')
    .summary('mark a contact verified')
    .description(
      'mark a contact as verified after comparing safety numbers; from then on a new key of theirs blocks sending until you accept it',
    )
    .argument('<contact>', 'a contact name or an account id')
    .argument('[safetyNumber...]', 'the number they read to you: checked against yours first')
    .addHelpText(
      'after',
      examples(
        'privcomm verify bob',
        'privcomm verify bob 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890',
      ),
    )
    .action(async (contact: string, number: string[], _o: unknown, command: Command) => {
      const given = number.join('').replace(/\s+/g, '');
      if (given !== '' && !/^\d{60}$/.test(given))
        throw new UsageError('a safety number is 60 digits (spaces allowed)');
      const { client, self } = await ctx.openAccount(command);
      const accountId = await client.resolve(contact);
      const labels = await ctx.names(client, self.accountId);
      if (given !== '') {
        const mine = await client.safetyNumber(accountId);
        if (mine.digits !== given)
          throw new CliError(
            `the safety numbers do not match: ${labels.label(accountId)} was NOT verified. Someone may be intercepting; compare again in person`,
            'SAFETY_NUMBER_MISMATCH',
          );
      }
      await client.verify(accountId);
      ctx.out.result(
        { accountId, verified: true },
        `${labels.label(accountId)} is verified. If their key ever changes, sending stops until you accept the new one.`,
      );
    });

  program
    .command('accept-identity')
    .summary("trust a contact's new identity key")
    .description(
      "trust a contact's new identity key (after their safety number changed); the contact is then no longer verified",
    )
    .argument('<contact>', 'a contact name or an account id')
    .addHelpText('after', examples('privcomm safety-number bob', 'privcomm accept-identity bob'))
    .action(async (contact: string, _o: unknown, command: Command) => {
      const { client, self } = await ctx.openAccount(command);
      const accountId = await client.resolve(contact);
      await client.acceptIdentity(accountId);
      const labels = await ctx.names(client, self.accountId);
      ctx.out.result(
        { accountId, accepted: true, verified: false },
        `Accepted the new key of ${labels.label(accountId)}. Compare safety numbers again, then run: privcomm verify ${contact}`,
      );
    });
};
