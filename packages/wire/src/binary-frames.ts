import { Type, type Static } from 'typebox';
import { EnvelopeSchema, OutgoingMessageSchema, SocketSendRequestSchema } from './messages.ts';
import { MAX_FRAME_BYTES } from './frames.ts';

/**
 * Binary frames (docs/protocol.md, "Binary frames"): the two frames that carry ciphertexts,
 * `message.send` from a client and `envelope` from the relay, may travel as binary WebSocket
 * messages, with their contents as bytes instead of base64 inside JSON. Per message that saves
 * the base64 (a third more bytes), scanning it as JSON, decoding it, and validating it as UTF-8.
 *
 * Layout: a 2-byte big-endian length N, then N bytes of the frame as ASCII JSON in which each
 * `content` is an integer, its length in bytes, then the contents back to back, in the order
 * they appear in the JSON. Their lengths must add up to exactly what follows the JSON.
 *
 * A client asks for them by opening the socket with BINARY_FRAMES_QUERY; a relay that speaks them
 * says so in its answer to `auth` (`"frames": "binary"`), and only then sends binary envelopes and
 * takes binary sends. Every other frame stays JSON text, and a JSON `message.send` is accepted on
 * either kind of socket. A relay without them ignores the query and answers without the field.
 */
export const BINARY_FRAMES_QUERY = 'frames=binary';
export const BINARY_FRAMES = 'binary';

/** The JSON part's length fits in 2 bytes. */
export const MAX_BINARY_HEADER_BYTES = 0xffff;

/** `message.send` in a binary frame: each message's `content` is the length of its bytes. */
export const BinarySocketSendRequestSchema = Type.Object(
  {
    ...SocketSendRequestSchema.properties,
    messages: Type.Array(
      Type.Object(
        {
          ...OutgoingMessageSchema.properties,
          content: Type.Integer({ minimum: 1, maximum: MAX_FRAME_BYTES }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
  },
  { additionalProperties: false },
);
export type BinarySocketSendRequest = Static<typeof BinarySocketSendRequestSchema>;

/** `envelope` in a binary frame: `content` is the length of its bytes. */
export const BinaryEnvelopeSchema = Type.Object({
  ...EnvelopeSchema.properties,
  content: Type.Integer({ minimum: 0, maximum: MAX_FRAME_BYTES }),
});
export type BinaryEnvelope = Static<typeof BinaryEnvelopeSchema>;

/** The JSON part (as ASCII text) and what follows it; undefined if the length overruns. */
export const splitBinaryFrame = (
  frame: Uint8Array,
): { header: string; tail: Uint8Array } | undefined => {
  if (frame.length < 2) return undefined;
  const length = ((frame[0] as number) << 8) | (frame[1] as number);
  if (2 + length > frame.length) return undefined;
  let header = '';
  for (let i = 2; i < 2 + length; i += 1) {
    const byte = frame[i] as number;
    if (byte > 0x7f) return undefined;
    header += String.fromCharCode(byte);
  }
  return { header, tail: frame.subarray(2 + length) };
};

/** Cuts `tail` into contents of these lengths; undefined unless they add up to it exactly. */
export const cutContents = (
  tail: Uint8Array,
  lengths: readonly number[],
): Uint8Array[] | undefined => {
  let total = 0;
  for (const length of lengths) total += length;
  if (total !== tail.length) return undefined;
  const contents: Uint8Array[] = [];
  let at = 0;
  for (const length of lengths) {
    contents.push(tail.subarray(at, at + length));
    at += length;
  }
  return contents;
};

/**
 * A binary frame from its JSON (ASCII: what JSON.stringify makes of ids and numbers) and its
 * contents. Throws on a non-ASCII or overlong header: a bug in the caller, not input.
 */
export const joinBinaryFrame = (header: string, contents: readonly Uint8Array[]): Uint8Array => {
  if (header.length > MAX_BINARY_HEADER_BYTES) throw new Error('binary frame header too long');
  let size = 2 + header.length;
  for (const content of contents) size += content.length;
  const frame = new Uint8Array(size);
  frame[0] = header.length >> 8;
  frame[1] = header.length & 0xff;
  for (let i = 0; i < header.length; i += 1) {
    const code = header.charCodeAt(i);
    if (code > 0x7f) throw new Error('binary frame header is not ASCII');
    frame[2 + i] = code;
  }
  let at = 2 + header.length;
  for (const content of contents) {
    frame.set(content, at);
    at += content.length;
  }
  return frame;
};
