/**
 * A binary frame (packages/wire/src/binary-frames.ts, docs/protocol.md "Binary frames") from its
 * JSON, which must be ASCII, and one content: the wire's joinBinaryFrame with Buffer's native
 * copies, for the relay's most frequent frame. Imports nothing, so that the benchmark's load
 * generator can use it without loading the wire package.
 */
export const binaryFrame = (header: string, content: Buffer): Buffer => {
  const frame = Buffer.allocUnsafe(2 + header.length + content.length);
  frame.writeUInt16BE(header.length, 0);
  frame.write(header, 2, 'latin1');
  content.copy(frame, 2 + header.length);
  return frame;
};
