import { ristretto255_oprf } from '@noble/curves/ed25519.js';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  blindNumber,
  ClientError,
  countryCode,
  discoveryToken,
  normalizePhoneNumber,
  parseAddressBook,
  parseCsv,
  parseVcard,
  type E164,
} from '../src/index.ts';

const code = (run: () => unknown): string | undefined => {
  try {
    run();
  } catch (error) {
    if (error instanceof ClientError) return error.code;
    throw error;
  }
  return undefined;
};

describe('normalizePhoneNumber', () => {
  it.each([
    ['+15551230001', undefined],
    ['+1 (555) 123-0001', undefined],
    ['+1 555.123.0001', undefined],
    ['001 555 123 0001', undefined],
    ['(555) 123-0001', 'US'],
    ['555-123-0001', 'us'],
    [' +1-555-123-0001 ', 'GB'],
  ])('writes %s (country %s) as +15551230001', (raw, country) => {
    expect(normalizePhoneNumber(raw, country)).toBe('+15551230001');
  });

  it('reads national numbers with their country', () => {
    expect(normalizePhoneNumber('020 7946 0018', 'GB')).toBe('+442079460018');
    expect(normalizePhoneNumber('0151 1234 5678', 'DE')).toBe('+4915112345678');
    expect(normalizePhoneNumber('06 12 34 56 78', 'FR')).toBe('+33612345678');
  });

  it.each([
    ['12', undefined],
    ['+1555', undefined],
    ['hello', undefined],
    ['', undefined],
    ['+1 555 123 0001 999999', undefined],
    ['x'.repeat(100), undefined],
  ])('refuses %s as INVALID_PHONE_NUMBER', (raw, country) => {
    expect(code(() => normalizePhoneNumber(raw, country))).toBe('INVALID_PHONE_NUMBER');
  });

  it('asks for a country code when a national number comes without a country', () => {
    expect(() => normalizePhoneNumber('020 7946 0018')).toThrow(/country code/);
  });

  it('never repeats the number in its error', () => {
    let message = '';
    try {
      normalizePhoneNumber('+1 555 98765');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/not a possible phone number/);
    expect(message).not.toMatch(/98765/);
  });

  it('refuses unknown country codes', () => {
    expect(countryCode('gb')).toBe('GB');
    expect(code(() => countryCode('XX'))).toBe('INVALID_COUNTRY');
    expect(code(() => normalizePhoneNumber('020 7946 0018', 'England'))).toBe('INVALID_COUNTRY');
  });
});

describe('blinding and tokens', () => {
  const key = ristretto255_oprf.oprf.generateKeyPair().secretKey;
  const token = (number: string) => {
    const blinded = blindNumber(number as E164, (length) => new Uint8Array(randomBytes(length)));
    return discoveryToken(blinded, ristretto255_oprf.oprf.blindEvaluate(key, blinded.blinded));
  };

  it('derives the same 32-byte token whatever the blind, and different tokens for different numbers', () => {
    const first = token('+15551230001');
    expect(first).toHaveLength(32);
    expect(token('+15551230001')).toEqual(first);
    expect(token('+15551230002')).not.toEqual(first);
  });

  it('sends a different blinded element each time', () => {
    const random = (length: number) => new Uint8Array(randomBytes(length));
    const a = blindNumber('+15551230001' as E164, random);
    const b = blindNumber('+15551230001' as E164, random);
    expect(a.blinded).not.toEqual(b.blinded);
  });
});

describe('address books', () => {
  it('reads CSV with a header: name and several phone columns, quotes, Google\'s ":::"', () => {
    const csv = [
      'Name,Given Name,Phone 1 - Value,Phone 2 - Value,Notes',
      '"Example, Alice",Alice,+1 555 123 0001 ::: +1 555 123 0003,,"a ""quoted"" note"',
      'Bob,Bob,,(555) 123-0002,"two',
      'lines"',
      'No Phone,,,,',
    ].join('\r\n');
    expect(parseCsv(csv)).toEqual([
      { name: 'Example, Alice', phones: ['+1 555 123 0001', '+1 555 123 0003'] },
      { name: 'Bob', phones: ['(555) 123-0002'] },
    ]);
  });

  it('reads CSV without a header as name then numbers, with semicolons too', () => {
    expect(parseCsv('alice;+15551230001;+15551230003\nbob;+15551230002\n')).toEqual([
      { name: 'alice', phones: ['+15551230001', '+15551230003'] },
      { name: 'bob', phones: ['+15551230002'] },
    ]);
  });

  it('refuses a CSV whose header has no phone column, and an unclosed quote', () => {
    expect(code(() => parseCsv('Name,Email\nalice,a@example.org'))).toBe('INVALID_ADDRESS_BOOK');
    expect(() => parseCsv('alice,"+1555\nbob,1')).toThrow(/never closed/);
  });

  it('reads vCard 2.1, 3.0 and 4.0: folded lines, groups, parameters, tel: URIs, N without FN', () => {
    const vcf = [
      'BEGIN:VCARD',
      'VERSION:3.0',
      'FN:Alice',
      '  Example',
      'item1.TEL;TYPE=CELL,VOICE:+1 555 123 0001',
      'TEL;TYPE=HOME:+1 555 123 0003',
      'END:VCARD',
      'BEGIN:VCARD',
      'VERSION:4.0',
      'N:Builder;Bob;;;',
      'TEL;VALUE=uri;TYPE="voice,cell":tel:+1-555-123-0002',
      'END:VCARD',
      'BEGIN:VCARD',
      'VERSION:2.1',
      'FN:Escaped\\, Name',
      'EMAIL:no-phone@example.org',
      'END:VCARD',
    ].join('\r\n');
    expect(parseVcard(vcf)).toEqual([
      { name: 'Alice Example', phones: ['+1 555 123 0001', '+1 555 123 0003'] },
      { name: 'Bob Builder', phones: ['+1-555-123-0002'] },
    ]);
    expect(parseAddressBook(vcf)).toEqual(parseVcard(vcf));
  });

  it('refuses a vCard that never ends or nests', () => {
    expect(code(() => parseVcard('BEGIN:VCARD\nFN:x\nTEL:+15551230001\n'))).toBe(
      'INVALID_ADDRESS_BOOK',
    );
    expect(() => parseVcard('BEGIN:VCARD\nBEGIN:VCARD\nEND:VCARD\nEND:VCARD')).toThrow(/inside/);
  });

  it('tells CSV from vCard by BEGIN:VCARD', () => {
    expect(parseAddressBook('alice,+15551230001')).toEqual([
      { name: 'alice', phones: ['+15551230001'] },
    ]);
  });
});
