import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES } from '@privcomm/wire';
import {
  parseDeviceSetChange,
  parseEnvelope,
  parseFrame,
  parseProvisioningPayload,
  parseProvisioningRequest,
  parseRetryAfter,
} from '../src/incoming.ts';

/**
 * Every parser of what the relay or a peer sends: whatever arrives, it returns the item or a
 * refusal with a fixed reason, never throws, and never accepts what the schema does not allow.
 */
const anyJson = fc.jsonValue({ maxDepth: 4 });
const uuid = fc.uuid({ version: 4 });
const reasons = new Set<string>();
const noteReason = (parsed: { ok: boolean; reason?: string }) => {
  if (!parsed.ok) {
    expect(parsed.reason).toMatch(/^[A-Za-z ]+$/);
    reasons.add(parsed.reason as string);
  }
};

describe('frame parser', () => {
  it('never throws on any data, and refuses with a fixed phrase', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          anyJson.map((v) => JSON.stringify(v)),
          fc.anything(),
        ),
        (data) => {
          noteReason(parseFrame(data));
        },
      ),
    );
  });

  it('accepts every well-formed request and response, with exactly its fields', () => {
    const request = fc.record({
      type: fc.constant('request' as const),
      id: fc.integer({ min: 0, max: 0xffffffff }),
      verb: fc.string({ maxLength: 32 }),
      body: anyJson,
    });
    const response = fc.record({
      type: fc.constant('response' as const),
      id: fc.integer({ min: 0, max: 0xffffffff }),
      status: fc.integer({ min: 100, max: 599 }),
    });
    fc.assert(
      fc.property(fc.oneof(request, response), (frame) => {
        const parsed = parseFrame(JSON.stringify(frame));
        expect(parsed.ok).toBe(true);
        if (parsed.ok && parsed.value.type !== 'error')
          expect(parsed.value.frame).toEqual(JSON.parse(JSON.stringify(frame)));
      }),
    );
  });

  it('refuses frames with a bad id, status or type, extra fields, or beyond the size limit', () => {
    const bad = fc.oneof(
      fc.record({
        type: fc.constant('request'),
        id: fc.oneof(fc.integer({ max: -1 }), fc.string(), fc.double({ min: 0.1, max: 0.9 })),
        verb: fc.constant('envelope'),
      }),
      fc.record({
        type: fc.constant('response'),
        id: fc.nat(),
        status: fc.oneof(fc.integer({ max: 99 }), fc.integer({ min: 600 })),
      }),
      fc.record({
        type: fc.string().filter((t) => !['request', 'response', 'error'].includes(t)),
        id: fc.nat(),
      }),
      fc.record({
        type: fc.constant('request'),
        id: fc.nat(),
        verb: fc.constant('ping'),
        extra: anyJson,
      }),
    );
    fc.assert(
      fc.property(bad, (frame) => {
        expect(parseFrame(JSON.stringify(frame)).ok).toBe(false);
      }),
    );
    expect(parseFrame(' '.repeat(MAX_FRAME_BYTES + 1))).toEqual({
      ok: false,
      reason: 'frame too large',
    });
  });
});

describe('envelope parser', () => {
  const good = fc.record({
    id: uuid,
    type: fc.integer({ min: 0, max: 255 }),
    content: fc.base64String(),
    urgent: fc.boolean(),
    online: fc.boolean(),
  });

  it('accepts what the relay sends and refuses anything else without throwing', () => {
    fc.assert(
      fc.property(good, (envelope) => {
        expect(parseEnvelope(envelope)).toEqual({ ok: true, value: envelope });
      }),
    );
    fc.assert(fc.property(fc.anything(), (value) => noteReason(parseEnvelope(value))));
  });

  it('refuses an envelope with any one field wrong', () => {
    const broken = fc.tuple(
      good,
      fc.constantFrom('id', 'type', 'content', 'urgent', 'online'),
      fc.oneof(fc.string(), fc.integer({ min: 256 }), fc.constant(null)),
    );
    fc.assert(
      fc.property(broken, ([envelope, field, value]) => {
        fc.pre(!(field === 'content' && typeof value === 'string'));
        expect(parseEnvelope({ ...envelope, [field]: value }).ok).toBe(false);
      }),
    );
    expect(
      parseEnvelope({
        id: 'A0000000-0000-4000-8000-000000000000',
        type: 1,
        content: '',
        urgent: false,
        online: false,
      }).ok,
    ).toBe(false);
  });
});

describe('409/410 body parser', () => {
  it('accepts device lists and refuses anything that is not one, never throwing', () => {
    const ids = fc.array(fc.integer({ min: 1, max: 127 }), { maxLength: 8 });
    fc.assert(
      fc.property(ids, ids, (missingDevices, extraDevices) => {
        expect(parseDeviceSetChange(409, { missingDevices, extraDevices })).toEqual({
          ok: true,
          value: { missing: missingDevices, extra: extraDevices, stale: [] },
        });
        expect(parseDeviceSetChange(410, { staleDevices: missingDevices })).toEqual({
          ok: true,
          value: { missing: [], extra: [], stale: missingDevices },
        });
      }),
    );
    fc.assert(
      fc.property(fc.constantFrom(409 as const, 410 as const), fc.anything(), (status, body) => {
        noteReason(parseDeviceSetChange(status, body));
      }),
    );
    for (const bad of [0, 128, -1, 1.5, '1']) {
      expect(parseDeviceSetChange(409, { missingDevices: [bad], extraDevices: [] }).ok).toBe(false);
      expect(parseDeviceSetChange(410, { staleDevices: [bad] }).ok).toBe(false);
    }
  });

  it('reads a 429 delay as whole seconds up to a day, 1 otherwise', () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        const seconds = parseRetryAfter(body);
        expect(Number.isInteger(seconds) && seconds >= 0 && seconds <= 86_400).toBe(true);
      }),
    );
    expect(parseRetryAfter({ retryAfterSeconds: 7 })).toBe(7);
    expect(parseRetryAfter({ retryAfterSeconds: 1e9 })).toBe(1);
  });
});

describe('provisioning parsers', () => {
  it('accept a well-formed payload and refuse anything else, never throwing', () => {
    const payload = fc.record(
      {
        accountId: uuid,
        linkToken: fc.string({ minLength: 1, maxLength: 100 }),
        name: fc.string({ maxLength: 200 }),
      },
      { requiredKeys: ['accountId', 'linkToken'] },
    );
    fc.assert(
      fc.property(payload, (p) => {
        expect(parseProvisioningPayload(JSON.stringify(p))).toEqual({ ok: true, value: p });
      }),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          anyJson.map((v) => JSON.stringify(v)),
        ),
        (json) => noteReason(parseProvisioningPayload(json)),
      ),
    );
    expect(parseProvisioningPayload(JSON.stringify({ accountId: 'me', linkToken: 't' })).ok).toBe(
      false,
    );
  });

  it('check the bodies of provisioning requests', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('provisioning.address', 'provisioning.message', 'other'),
        fc.nat(),
        anyJson,
        (verb, id, body) => {
          noteReason(parseProvisioningRequest({ type: 'request', id, verb, body }));
        },
      ),
    );
    expect(
      parseProvisioningRequest({
        type: 'request',
        id: 1,
        verb: 'provisioning.address',
        body: { address: 'short' },
      }).ok,
    ).toBe(false);
    expect(
      parseProvisioningRequest({
        type: 'request',
        id: 1,
        verb: 'provisioning.address',
        body: { address: 'A'.repeat(32) },
      }),
    ).toEqual({
      ok: true,
      value: { verb: 'provisioning.address', id: 1, address: 'A'.repeat(32) },
    });
  });

  it('refusals use a small set of fixed phrases', () => {
    expect(reasons.size).toBeGreaterThan(3);
    for (const reason of reasons) expect(reason).not.toMatch(/\d/);
  });
});
