/**
 * Decodes canonical padded base64, the wire's only binary encoding (BASE64_PATTERN in
 * @privcomm/wire), or says it is not: undefined for any other spelling.
 *
 * Node's decoder is lenient in four ways, each checked here without building a string: it skips
 * what is not in the alphabet (the decoded length then falls short), it reads only the low byte
 * of a wider character (`ī`, U+012B, decodes as `+`), it takes base64url's `-` and `_` as well,
 * and it ignores the unused bits before the padding (`AB==` decodes as `AA==`). Until 2026-12-06
 * the check was a decode and an encode back to compare: the same verdict on 15.9 million inputs
 * (docs/benchmarks.md, item 25), but a second 1.4 KiB string for every 1 KiB message, 7 % of what
 * the relay allocated on its busiest path. The test holds it to BASE64_PATTERN.
 */
const EQUALS = 0x3d;
/** Each base64 character's value by its code; -1 for every other ASCII code. */
const VALUES = new Int8Array(128).fill(-1);
[...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].forEach((char, value) => {
  VALUES[char.charCodeAt(0)] = value;
});

export const decodeCanonicalBase64 = (text: string): Buffer | undefined => {
  const length = text.length;
  if (length % 4 !== 0) return undefined;
  const padding =
    length === 0 || text.charCodeAt(length - 1) !== EQUALS
      ? 0
      : text.charCodeAt(length - 2) !== EQUALS
        ? 1
        : 2;
  if (padding > 0) {
    // The last character before the padding carries 2 (one `=`) or 4 (two) unused bits.
    const value = VALUES[text.charCodeAt(length - padding - 1)] ?? -1;
    if (value < 0 || (value & (padding === 1 ? 0b11 : 0b1111)) !== 0) return undefined;
  }
  // A character outside ASCII takes more than one UTF-8 byte: a native count finds it.
  if (Buffer.byteLength(text, 'utf8') !== length) return undefined;
  if (text.includes('-') || text.includes('_')) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === (length / 4) * 3 - padding ? bytes : undefined;
};
