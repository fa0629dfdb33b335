import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BASE64_PATTERN } from '@privcomm/wire';
import { decodeCanonicalBase64 } from '../src/canonical-base64.ts';

/** The relay's decoder must accept exactly what the wire's pattern describes, and decode it. */
const pattern = new RegExp(BASE64_PATTERN);
const agrees = (text: string): void => {
  const decoded = decodeCanonicalBase64(text);
  expect({ text, accepted: decoded !== undefined }).toEqual({ text, accepted: pattern.test(text) });
  if (decoded) expect(decoded.toString('base64')).toBe(text);
};

describe('decodeCanonicalBase64', () => {
  it('decodes canonical spellings and refuses everything the pattern refuses', () => {
    expect(decodeCanonicalBase64('aGVsbG8=')?.toString()).toBe('hello');
    for (const text of ['AA==', 'AAA=', 'AAAA', 'ab+/', 'AB==', 'AP==', '//==', 'AAB=', 'AA/=']) {
      agrees(text);
    }
    for (const bad of ['A', 'AA', 'AAA', 'AA=', 'A===', '====', 'AA==AAAA', 'ab-_', 'AA AA']) {
      expect(decodeCanonicalBase64(bad), JSON.stringify(bad)).toBeUndefined();
    }
    for (const bad of ['AAAA\n', '\nAAAA', 'AAA==', 'AA%3D', 'AB==', 'AAB=', 'aGVsbG+=']) {
      expect(decodeCanonicalBase64(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });

  it('refuses every character outside the alphabet, wide ones too, wherever it stands', () => {
    // Node's decoder reads a wide character's low byte: 'ī' (U+012B) decodes as '+'.
    expect(Buffer.from('īQ==', 'base64')).toEqual(Buffer.from('+Q==', 'base64'));
    expect(decodeCanonicalBase64('īQ==')).toBeUndefined();
    let refused = 0;
    for (const text of ['AA==', 'AAA=', 'AAAA', 'AQIDBA==']) {
      for (let index = 0; index < text.length; index += 1) {
        for (let code = 0; code < 0x10000; code += 1) {
          const changed = text.slice(0, index) + String.fromCharCode(code) + text.slice(index + 1);
          const accepted = decodeCanonicalBase64(changed) !== undefined;
          if (accepted !== pattern.test(changed)) agrees(changed); // fails, naming the text
          if (!accepted) refused += 1;
        }
      }
    }
    // Per position, at most the 64 characters of the alphabet and '=' can be accepted.
    expect(refused).toBeGreaterThan(20 * (0x10000 - 65));
  });

  it('agrees with BASE64_PATTERN on random encodings and on near-misses of them', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.';
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        agrees(Buffer.from(bytes).toString('base64'));
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.constantFrom(...alphabet),
        (bytes, at, char) => {
          const text = Buffer.from(bytes).toString('base64');
          const index = at % text.length;
          agrees(text.slice(0, index) + char + text.slice(index + 1)); // one character changed
          agrees(text.slice(0, index) + char + text.slice(index)); // one inserted
          agrees(text.slice(0, index) + text.slice(index + 1)); // one removed
        },
      ),
      { numRuns: 5000 },
    );
  });
});
