import { isAccountId, type AccountId } from '@privcomm/wire';
import { ClientError } from './errors.ts';

/**
 * A contact link: what one person gives another (as text or as a QR code) to be added as a
 * contact. It names the relay, the account and the name its owner suggests:
 *
 *   privcomm://contact/<account-id>?relay=<relay URL, percent-encoded>#<name, percent-encoded>
 *
 * It carries nothing secret (an account id is an address, not a credential), and it is parsed
 * strictly: a link that does not follow this form exactly is refused with what is wrong. The CLI
 * (`contacts link`, `contacts add --link`) and the app (text field, QR code) use these two
 * functions and nothing else.
 */
export interface ContactLink {
  readonly relayUrl: string;
  readonly accountId: AccountId;
  /** The name its owner suggests; the one who adds the contact may choose another. */
  readonly name?: string;
}

const PREFIX = 'privcomm://contact/';
/** A QR code of version 10 holds about 170 bytes at error level M; links stay well under it. */
export const MAX_CONTACT_LINK_LENGTH = 512;
export const MAX_CONTACT_NAME_LENGTH = 64;

// A function declaration (not an arrow): TypeScript narrows after a call to it.
function refuse(why: string): never {
  throw new ClientError('INVALID_CONTACT_LINK', `that is not a privcomm contact link: ${why}`);
}

/**
 * A relay address as the core compares it: scheme, host and port, and a path without its
 * trailing slash (the relay's API may sit under a path).
 */
export const relayKey = (relayUrl: string): string => {
  const url = new URL(relayUrl);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
};

const decode = (part: string, what: string): string => {
  try {
    return decodeURIComponent(part);
  } catch {
    return refuse(`its ${what} is not percent-encoded text`);
  }
};

export const formatContactLink = (link: ContactLink): string => {
  const name = link.name?.trim();
  return `${PREFIX}${link.accountId}?relay=${encodeURIComponent(relayKey(link.relayUrl))}${
    name ? `#${encodeURIComponent(name.slice(0, MAX_CONTACT_NAME_LENGTH))}` : ''
  }`;
};

/** Parses a contact link; throws ClientError INVALID_CONTACT_LINK saying what is wrong. */
export const parseContactLink = (text: string): ContactLink => {
  const link = text.trim();
  if (link.length > MAX_CONTACT_LINK_LENGTH) refuse('it is too long');
  if (!link.toLowerCase().startsWith(PREFIX))
    refuse(`it should start with ${PREFIX} (ask your contact to share their link again)`);
  const rest = link.slice(PREFIX.length);
  const hash = rest.indexOf('#');
  const beforeHash = hash < 0 ? rest : rest.slice(0, hash);
  const nameText = hash < 0 ? undefined : decode(rest.slice(hash + 1), 'name');
  const question = beforeHash.indexOf('?');
  if (question < 0) refuse('it does not say which relay the contact is on (relay=...)');
  const accountId = beforeHash.slice(0, question).toLowerCase();
  if (!isAccountId(accountId)) refuse('the account id in it is not valid (it may be cut short)');
  const query = new URLSearchParams(beforeHash.slice(question + 1));
  const relays = query.getAll('relay');
  if (relays.length !== 1 || [...query.keys()].some((key) => key !== 'relay'))
    refuse('it should name exactly one relay and nothing else');
  let relayUrl: URL;
  try {
    relayUrl = new URL(relays[0] as string);
  } catch {
    return refuse('the relay address in it is not a URL');
  }
  if (relayUrl.protocol !== 'https:' && relayUrl.protocol !== 'http:')
    refuse('the relay address in it is not an http(s) address');
  if (relayUrl.username !== '' || relayUrl.password !== '' || relayUrl.search || relayUrl.hash)
    refuse('the relay address in it carries more than an address');
  const name = nameText?.trim();
  if (name !== undefined && name.length > MAX_CONTACT_NAME_LENGTH)
    refuse(`the name in it is longer than ${MAX_CONTACT_NAME_LENGTH} characters`);
  if (name !== undefined && /\p{Cc}/u.test(name)) refuse('the name in it has control characters');
  return {
    relayUrl: relayKey(relayUrl.toString()),
    accountId,
    ...(name ? { name } : {}),
  };
};
