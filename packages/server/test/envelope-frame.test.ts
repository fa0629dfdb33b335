import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cutContents, splitBinaryFrame } from '@privcomm/wire';
import { binaryFrame } from '../src/ws/binary-frame.ts';
import { envelopeFrame } from '../src/ws/frame-channel.ts';

const envelopeArbitrary = fc.record({
  requestId: fc.nat({ max: 0xffffffff }),
  type: fc.integer({ min: 0, max: 255 }),
  content: fc.uint8Array({ maxLength: 2048 }),
  urgent: fc.boolean(),
  stored: fc.option(fc.date({ noInvalidDate: true }), { nil: undefined }),
});

/** An envelope's fields, in the wire's order, with its content (base64, or a length). */
const envelopeOf = (
  { type, urgent, stored }: { type: number; urgent: boolean; stored?: Date },
  content: string | number,
) => ({
  id: randomUUID(),
  type,
  content,
  urgent,
  online: stored === undefined,
  ...(stored === undefined ? {} : { storedHour: stored.toISOString() }),
});

describe('envelopeFrame', () => {
  it('is exactly JSON.stringify of the envelope request, stored or online', () => {
    fc.assert(
      fc.property(envelopeArbitrary, ({ requestId, content, ...rest }) => {
        const base64 = Buffer.from(content).toString('base64');
        const envelope = envelopeOf(rest, base64);
        expect(envelopeFrame(requestId, envelope, base64)).toBe(
          JSON.stringify({ type: 'request', id: requestId, verb: 'envelope', body: envelope }),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('in a binary frame, is the same request with the content as a length, then its bytes', () => {
    fc.assert(
      fc.property(envelopeArbitrary, ({ requestId, content, ...rest }) => {
        const bytes = Buffer.from(content);
        const envelope = envelopeOf(rest, bytes.length);
        const frame = binaryFrame(envelopeFrame(requestId, envelope, bytes.length), bytes);
        const split = splitBinaryFrame(frame);
        expect(split?.header).toBe(
          JSON.stringify({ type: 'request', id: requestId, verb: 'envelope', body: envelope }),
        );
        const [cut] = cutContents(split?.tail ?? new Uint8Array(), [bytes.length]) ?? [];
        expect(Buffer.from(cut ?? []).equals(bytes)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
