import fc from 'fast-check';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import {
  BinaryEnvelopeSchema,
  BinarySocketSendRequestSchema,
  cutContents,
  joinBinaryFrame,
  splitBinaryFrame,
} from '../src/index.ts';

const send = Compile(BinarySocketSendRequestSchema);
const envelope = Compile(BinaryEnvelopeSchema);
const ACCOUNT = '0f8fad5b-d9cb-469f-a165-70867728950e';

describe('binary frames', () => {
  it('split and cut give back exactly the header and contents that were joined', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...'{}[]":,0123456789abcdefz-'), maxLength: 300 }),
        fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }),
        (header, contents) => {
          const frame = joinBinaryFrame(header, contents);
          expect(frame.length).toBe(2 + header.length + contents.reduce((n, c) => n + c.length, 0));
          const split = splitBinaryFrame(frame);
          expect(split?.header).toBe(header);
          const cut = cutContents(
            split?.tail ?? new Uint8Array(),
            contents.map((content) => content.length),
          );
          expect(cut?.map((content) => [...content])).toEqual(
            contents.map((content) => [...content]),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses a header length past the end, a non-ASCII header, and lengths that do not add up', () => {
    expect(splitBinaryFrame(new Uint8Array([0]))).toBeUndefined();
    expect(splitBinaryFrame(new Uint8Array([0, 5, 0x7b, 0x7d]))).toBeUndefined();
    expect(splitBinaryFrame(new Uint8Array([0, 2, 0x7b, 0xc3]))).toBeUndefined();
    expect(splitBinaryFrame(new Uint8Array([0, 0]))).toEqual({
      header: '',
      tail: new Uint8Array(),
    });
    const tail = new Uint8Array([1, 2, 3, 4]);
    expect(cutContents(tail, [1, 2])).toBeUndefined(); // a byte left over
    expect(cutContents(tail, [2, 3])).toBeUndefined(); // one short
    expect(cutContents(tail, [4])?.map((content) => [...content])).toEqual([[1, 2, 3, 4]]);
    expect(() => joinBinaryFrame('"é"', [])).toThrow(/ASCII/);
    expect(() => joinBinaryFrame('x'.repeat(0x10000), [])).toThrow(/too long/);
  });

  it('has schemas whose contents are lengths, with the JSON frames’ other rules', () => {
    const message = { deviceId: 1, registrationId: 7, type: 1, content: 1024 };
    expect(send.Check({ accountId: ACCOUNT, messages: [message] })).toBe(true);
    expect(send.Check({ accountId: ACCOUNT, messages: [{ ...message, content: 'AAAA' }] })).toBe(
      false,
    );
    expect(send.Check({ accountId: ACCOUNT, messages: [{ ...message, content: 0 }] })).toBe(false);
    expect(send.Check({ accountId: ACCOUNT, messages: [{ ...message, extra: 1 }] })).toBe(false);
    expect(send.Check({ messages: [message] })).toBe(false);
    expect(send.Check({ accountId: ACCOUNT, messages: Array(9).fill(message) })).toBe(false);
    expect(envelope.Check({ id: ACCOUNT, type: 1, content: 3, urgent: false, online: true })).toBe(
      true,
    );
    expect(
      envelope.Check({ id: ACCOUNT, type: 1, content: 'AAAA', urgent: false, online: true }),
    ).toBe(false);
  });
});
