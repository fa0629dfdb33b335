import {
  isSupportedCountry,
  parsePhoneNumberFromString,
  type CountryCode,
} from 'libphonenumber-js';
import { ClientError } from '../errors.ts';

/** A phone number in E.164 (`+` and up to 15 digits), the one form discovery works on. */
export type E164 = string & { readonly __brand: 'E164' };

const COUNTRY = /^[A-Z]{2}$/;

/** An ISO 3166 alpha-2 code libphonenumber-js has metadata for, or INVALID_COUNTRY. */
export const countryCode = (raw: string): CountryCode => {
  const code = raw.trim().toUpperCase();
  if (!COUNTRY.test(code) || !isSupportedCountry(code)) {
    throw new ClientError(
      'INVALID_COUNTRY',
      `"${raw}" is not a country code: use two letters such as US, GB or DE`,
    );
  }
  return code;
};

/**
 * Normalises a number as people write it ("+1 (555) 123-0001", "020 7946 0018" with country GB)
 * to E.164, with libphonenumber-js's metadata. The same person's number must give the same E.164
 * on every device, or the two would derive different tokens and never find each other.
 *
 * The check is "possible" (the right length for the country), not "valid" (an allocated range):
 * the metadata lags behind new ranges, and the relay cannot check that a number exists anyway.
 * Throws INVALID_PHONE_NUMBER with what to fix; the number itself is not repeated, so the
 * message can be logged.
 */
export const normalizePhoneNumber = (raw: string, defaultCountry?: string): E164 => {
  const text = raw.trim();
  if (text === '' || text.length > 64) {
    throw new ClientError('INVALID_PHONE_NUMBER', 'a phone number has 3 to 15 digits');
  }
  const country = defaultCountry === undefined ? undefined : countryCode(defaultCountry);
  if (!text.startsWith('+') && !text.startsWith('00') && country === undefined) {
    throw new ClientError(
      'INVALID_PHONE_NUMBER',
      'the number has no country code: write it with + and the country code (like +44 20 7946 0018), or give the country',
    );
  }
  const international = text.startsWith('00') ? `+${text.slice(2)}` : text;
  const parsed = parsePhoneNumberFromString(international, country);
  if (!parsed?.isPossible()) {
    throw new ClientError(
      'INVALID_PHONE_NUMBER',
      'not a possible phone number for its country (check the digits and the country code)',
    );
  }
  return parsed.number as E164;
};
