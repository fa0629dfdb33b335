import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  ClientError,
  normalizePhoneNumber,
  parseAddressBook,
  type AccountId,
  type E164,
  type PrivcommClient,
} from '@privcomm/client';
import { CliError } from '../errors.ts';
import type { RunContext } from '../run-context.ts';
import { countryFor, refreshPhone } from './phone.ts';

/** Contacts found by phone number: `contacts add NAME --phone N` and `contacts sync FILE`. */

/** The one account that published `number`, or a clear error. */
const onlyAccount = (number: E164, accounts: readonly AccountId[]): AccountId => {
  if (accounts.length === 0)
    throw new CliError(
      `${number} is not registered on this relay (or its owner does not let others find it by number); ask them for their account id ("privcomm whoami")`,
      'PHONE_NOT_FOUND',
    );
  if (accounts.length > 1)
    throw new CliError(
      `${accounts.length} accounts claim ${number} (the relay does not verify numbers); ask the person for their account id: ${accounts.join(', ')}`,
      'PHONE_AMBIGUOUS',
    );
  return accounts[0] as AccountId;
};

/** The account that published `number` (for `contacts add NAME --phone N`). */
export const findAccountByPhone = async (
  ctx: RunContext,
  client: PrivcommClient,
  dir: string,
  number: E164,
): Promise<AccountId> => {
  await refreshPhone(ctx, client, dir);
  const found = await client.discovery.lookup([number]);
  return onlyAccount(number, found.get(number) ?? []);
};

const readFile = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      'FILE_UNREADABLE',
    );
  }
};

/**
 * Looks up every number of a CSV or vCard address book and adds the people found as contacts,
 * under the names of the file. One line (or JSON object) per person: added, already a contact,
 * not found, or a number that could not be read.
 */
export const syncAddressBook = async (
  ctx: RunContext,
  command: Command,
  file: string,
  options: { country?: string },
): Promise<void> => {
  const entries = parseAddressBook(readFile(file));
  const country = countryFor(ctx, options);
  const { client, dir, self } = await ctx.openAccount(command);
  const people = entries.map((entry, index) => {
    const numbers: E164[] = [];
    let invalid = 0;
    for (const phone of entry.phones) {
      try {
        numbers.push(normalizePhoneNumber(phone, country));
      } catch (error) {
        if (!(error instanceof ClientError)) throw error;
        invalid += 1;
      }
    }
    return { name: entry.name.trim() || `contact ${index + 1}`, numbers, invalid };
  });
  await refreshPhone(ctx, client, dir);
  const found = await client.discovery.lookup(people.flatMap((person) => person.numbers));
  const existing = await client.contacts();
  const counts = { added: 0, known: 0, notFound: 0, invalid: 0 };
  for (const person of people) {
    const accounts = [
      ...new Set(person.numbers.flatMap((number) => found.get(number) ?? [])),
    ].filter((accountId) => accountId !== self.accountId);
    if (accounts.length === 0) {
      const reason = person.numbers.length === 0 ? 'invalid' : 'not-found';
      counts[reason === 'invalid' ? 'invalid' : 'notFound'] += 1;
      ctx.out.result(
        { type: reason === 'invalid' ? 'phone-invalid' : 'phone-not-found', name: person.name },
        reason === 'invalid'
          ? `${person.name}: no readable phone number (write numbers with + and the country code, or pass --country)`
          : `${person.name}: not on this relay`,
      );
      continue;
    }
    for (const accountId of accounts) {
      const known = existing.find((contact) => contact.accountId === accountId);
      if (known) {
        counts.known += 1;
        ctx.out.result(
          { type: 'contact-known', name: known.name, accountId },
          `${person.name}: already a contact (${known.name})`,
        );
        continue;
      }
      // Two accounts for one person, or a name already taken: the account id tells them apart.
      const taken = (candidate: string) => existing.some((contact) => contact.name === candidate);
      const name =
        accounts.length === 1 && !taken(person.name)
          ? person.name
          : `${person.name} (${accountId.slice(0, 8)})`;
      const contact = await client.addContact(name, accountId);
      existing.push(contact);
      counts.added += 1;
      ctx.out.result(
        { type: 'contact-added', name: contact.name, accountId },
        `${person.name}: added as ${contact.name} (${accountId})`,
      );
    }
  }
  ctx.out.status(
    `${counts.added} added, ${counts.known} already contacts, ${counts.notFound} not on this relay, ${counts.invalid} without a readable number.`,
  );
};
