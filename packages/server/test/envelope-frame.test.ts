import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envelopeFrame } from '../src/ws/frame-channel.ts';

describe('envelopeFrame', () => {
  it('is exactly JSON.stringify of the envelope request, stored or online', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }),
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 2048 }),
        fc.boolean(),
        fc.option(fc.date({ noInvalidDate: true }), { nil: undefined }),
        (requestId, type, content, urgent, stored) => {
          const envelope = {
            id: randomUUID(),
            type,
            content: Buffer.from(content).toString('base64'),
            urgent,
            online: stored === undefined,
            ...(stored === undefined ? {} : { storedHour: stored.toISOString() }),
          };
          const frame = envelopeFrame(requestId, envelope);
          expect(frame).toBe(
            JSON.stringify({ type: 'request', id: requestId, verb: 'envelope', body: envelope }),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });
});
