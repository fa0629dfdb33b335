import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import {
  DiscoveryEvaluateRequestSchema,
  DiscoveryLookupRequestSchema,
  DiscoveryStatusSchema,
  MAX_DISCOVERY_EVALUATIONS,
  MAX_DISCOVERY_LOOKUPS,
  PublishDiscoveryTokenRequestSchema,
} from '../src/index.ts';

const b64 = (bytes: number, fill = 7): string => Buffer.alloc(bytes, fill).toString('base64');
const element = b64(32);

describe('discovery requests', () => {
  const evaluate = Compile(DiscoveryEvaluateRequestSchema);
  const lookup = Compile(DiscoveryLookupRequestSchema);
  const publish = Compile(PublishDiscoveryTokenRequestSchema);

  it('take 32-byte elements and tokens in canonical base64, within the batch caps', () => {
    expect(evaluate.Check({ blinded: [element] })).toBe(true);
    expect(evaluate.Check({ blinded: Array(MAX_DISCOVERY_EVALUATIONS).fill(element) })).toBe(true);
    expect(lookup.Check({ tokens: Array(MAX_DISCOVERY_LOOKUPS).fill(element) })).toBe(true);
    for (const bad of [
      { blinded: [] },
      { blinded: Array(MAX_DISCOVERY_EVALUATIONS + 1).fill(element) },
      { blinded: [b64(31)] },
      { blinded: [b64(33)] },
      { blinded: [element.replace(/=$/, 'A')] },
      { blinded: ['+15551230001'] },
      { blinded: [element], extra: true },
    ]) {
      expect(evaluate.Check(bad), JSON.stringify(bad).slice(0, 80)).toBe(false);
    }
    expect(lookup.Check({ tokens: Array(MAX_DISCOVERY_LOOKUPS + 1).fill(element) })).toBe(false);
  });

  it('publish a token under a positive key version', () => {
    expect(publish.Check({ keyVersion: 1, token: element })).toBe(true);
    for (const keyVersion of [0, -1, 1.5, '1', 2 ** 31]) {
      expect(publish.Check({ keyVersion, token: element })).toBe(false);
    }
    expect(publish.Check({ keyVersion: 1 })).toBe(false);
  });

  it('report no published token as null', () => {
    const status = Compile(DiscoveryStatusSchema);
    expect(status.Check({ keyVersion: 2, publishedKeyVersion: null })).toBe(true);
    expect(status.Check({ keyVersion: 2, publishedKeyVersion: 1 })).toBe(true);
    expect(status.Check({ keyVersion: 2 })).toBe(false);
  });
});
