import { describe, expect, it } from 'vitest';
import { formatContactLink, parseContactLink } from '../src/contact-link.ts';
import { accountIdOf } from '../src/testing/ids.ts';

const ID = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');

describe('contact links', () => {
  it('round-trip the relay, the account and a name with spaces and accents', () => {
    const link = formatContactLink({
      relayUrl: 'https://relay.example.org/',
      accountId: ID,
      name: 'Zoë Ada',
    });
    expect(link).toBe(
      `privcomm://contact/${ID}?relay=https%3A%2F%2Frelay.example.org#Zo%C3%AB%20Ada`,
    );
    expect(parseContactLink(link)).toEqual({
      relayUrl: 'https://relay.example.org',
      accountId: ID,
      name: 'Zoë Ada',
    });
    // Without a name; a relay on a port and a path; surrounding spaces from a paste.
    const bare = formatContactLink({ relayUrl: 'http://127.0.0.1:8080/privcomm/', accountId: ID });
    expect(parseContactLink(`  ${bare}\n`)).toEqual({
      relayUrl: 'http://127.0.0.1:8080/privcomm',
      accountId: ID,
    });
  });

  it.each([
    ['', /should start with privcomm:\/\/contact\//],
    [`https://relay.example.org/${ID}`, /should start with/],
    [`privcomm://contact/${ID}`, /does not say which relay/],
    [
      `privcomm://contact/${ID.slice(0, 20)}?relay=https%3A%2F%2Fr.org`,
      /account id in it is not valid/,
    ],
    [`privcomm://contact/${ID}?relay=not%20a%20url`, /relay address in it is not a URL/],
    [`privcomm://contact/${ID}?relay=ftp%3A%2F%2Fr.org`, /not an http\(s\) address/],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fu%3Ap%40r.org`, /carries more than an address/],
    [
      `privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org&relay=https%3A%2F%2Fs.org`,
      /exactly one relay/,
    ],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org&token=x`, /exactly one relay/],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org#%E0%A4%A`, /name is not percent-encoded/],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org#${'a'.repeat(65)}`, /longer than 64/],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org#a%0Ab`, /control characters/],
    [`privcomm://contact/${ID}?relay=https%3A%2F%2Fr.org#${'a'.repeat(600)}`, /too long/],
  ])('refuse %j, saying what is wrong', (link, why) => {
    expect(() => parseContactLink(link)).toThrow(
      expect.objectContaining({
        code: 'INVALID_CONTACT_LINK',
        message: expect.stringMatching(why),
      }),
    );
  });
});
