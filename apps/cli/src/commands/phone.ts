import type { Command } from 'commander';
import { normalizePhoneNumber, type E164, type PrivcommClient } from '@privcomm/client';
import { forgetOwnPhone, readOwnPhone, saveOwnPhone } from '../phone-file.ts';
import type { RunContext } from '../run-context.ts';
import { examples } from './common.ts';

/** phone set, remove and show: whether others can find this account by its number. */

export const COUNTRY_OPTION = [
  '--country <CC>',
  'country for numbers written without +country code, e.g. GB (env PRIVCOMM_COUNTRY)',
] as const;

/** The country for numbers without a country code: --country, else PRIVCOMM_COUNTRY. */
export const countryFor = (ctx: RunContext, options: { country?: string }): string | undefined => {
  const value = options.country ?? ctx.io.env.PRIVCOMM_COUNTRY;
  return value === undefined || value.trim() === '' ? undefined : value;
};

/** Publishes `number` for this account and remembers it in the profile (for refreshes). */
export const publishPhone = async (
  client: PrivcommClient,
  dir: string,
  number: E164,
): Promise<number> => {
  const keyVersion = await client.discovery.publish(number);
  saveOwnPhone(dir, number);
  return keyVersion;
};

/**
 * After a rotation of the relay's discovery key, publishes this profile's number again under the
 * new key (nothing when it is current, or when this device published no number). Every command
 * that uses discovery calls it first, so a profile in use stays findable.
 */
export const refreshPhone = async (
  ctx: RunContext,
  client: PrivcommClient,
  dir: string,
): Promise<void> => {
  const own = readOwnPhone(dir);
  if (own === undefined) return;
  if (await client.discovery.refresh(normalizePhoneNumber(own))) {
    ctx.out.status('The relay rotated its discovery key: published your number again.');
  }
};

export const addPhoneCommands = (program: Command, ctx: RunContext): void => {
  const phone = program
    .command('phone')
    .summary('let others find this account by phone number, or stop it')
    .description(
      'publish or remove the phone number others can find this account by. The relay stores only a token derived with its secret key (an OPRF), never the number; see SECURITY.md.',
    )
    .addHelpText(
      'after',
      examples('privcomm phone set +15551230001', 'privcomm phone show', 'privcomm phone remove'),
    );

  phone
    .command('set')
    .description(
      'publish your number: people who have it can then find you ("privcomm contacts add NAME --phone NUMBER")',
    )
    .argument('<number>', 'your number, best with + and the country code: +15551230001')
    .option(...COUNTRY_OPTION)
    .addHelpText(
      'after',
      examples(
        'privcomm phone set +15551230001',
        'privcomm phone set "020 7946 0018" --country GB',
      ),
    )
    .action(async (raw: string, options: { country?: string }, command: Command) => {
      const number = normalizePhoneNumber(raw, countryFor(ctx, options));
      const { client, dir } = await ctx.openAccount(command);
      const keyVersion = await publishPhone(client, dir, number);
      ctx.out.result(
        { type: 'phone-published', number, keyVersion },
        `Published ${number}: people who have your number can now find you.`,
      );
    });

  phone
    .command('remove')
    .description('remove your number: nobody finds you by number any more')
    .addHelpText('after', examples('privcomm phone remove'))
    .action(async (_options: unknown, command: Command) => {
      const { client, dir } = await ctx.openAccount(command);
      await client.discovery.remove();
      forgetOwnPhone(dir);
      ctx.out.result(
        { type: 'phone-removed' },
        'Removed your number from the relay: nobody finds you by number any more.',
      );
    });

  phone
    .command('show')
    .description(
      'show the number this device published and whether it is current (publishes it again after a key rotation)',
    )
    .addHelpText('after', examples('privcomm phone show --json'))
    .action(async (_options: unknown, command: Command) => {
      const { client, dir } = await ctx.openAccount(command);
      await refreshPhone(ctx, client, dir);
      const status = await client.discovery.status();
      const number = readOwnPhone(dir) ?? null;
      const published = status.publishedKeyVersion !== null;
      ctx.out.result(
        { number, published, keyVersion: status.keyVersion },
        published
          ? `Findable by number${number === null ? ' (published from another device)' : `: ${number}`}.`
          : 'Not findable by number: publish yours with "privcomm phone set NUMBER".',
      );
    });
};
