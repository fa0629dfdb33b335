import { Type } from 'typebox';

/**
 * Standard padded base64, the only binary encoding on the wire, in its canonical spelling: the
 * unused bits before the padding must be zero (`AA==`, never `AB==`, which decodes to the same
 * byte). Otherwise one ciphertext would have several spellings, and a byte-for-byte copy of what a
 * client sent would not be what the relay stored.
 */
export const BASE64_PATTERN =
  '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$';

/** Length in base64 characters of `bytes` bytes. */
export const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;

/**
 * Canonical base64 of exactly `bytes` bytes. A length bound alone cannot say this: 31, 32 and 33
 * bytes all take 44 characters, so the pattern fixes the padding (and the unused tail bits).
 */
export const exactBase64Pattern = (bytes: number): string => {
  const groups = `(?:[A-Za-z0-9+/]{4}){${Math.floor(bytes / 3)}}`;
  const tail = ['', '[A-Za-z0-9+/][AQgw]==', '[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]='][bytes % 3];
  return `^${groups}${tail}$`;
};

/** A base64 string of at most `maxBytes` decoded bytes (and at least `minBytes`). */
export const Base64 = (maxBytes: number, minBytes = 1, description?: string) =>
  Type.String({
    pattern: minBytes === maxBytes ? exactBase64Pattern(maxBytes) : BASE64_PATTERN,
    minLength: base64Length(minBytes),
    maxLength: base64Length(maxBytes),
    ...(description === undefined ? {} : { description }),
  });
