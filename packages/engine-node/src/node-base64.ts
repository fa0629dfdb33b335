import type { Base64Codec } from '@privcomm/client';

/**
 * Node's base64 (Buffer), for a transport's `binaryFrames`: with it the client core speaks binary
 * frames to the relay. The core's own base64 is portable JavaScript, several times slower.
 */
export const nodeBase64: Base64Codec = {
  encode: (bytes) =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
  decode: (base64) => Buffer.from(base64, 'base64'),
};
