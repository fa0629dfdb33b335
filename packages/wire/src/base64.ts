import { Type } from 'typebox';

/** Standard padded base64, the only binary encoding on the wire. */
export const BASE64_PATTERN = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';

/** Length in base64 characters of `bytes` bytes. */
export const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;

/** A base64 string of at most `maxBytes` decoded bytes (and at least `minBytes`). */
export const Base64 = (maxBytes: number, minBytes = 1, description?: string) =>
  Type.String({
    pattern: BASE64_PATTERN,
    minLength: base64Length(minBytes),
    maxLength: base64Length(maxBytes),
    ...(description === undefined ? {} : { description }),
  });
