import { describe, expect, it } from 'vitest';
import { newInviteCode } from '../src/cli/admin/invites.ts';

describe('newInviteCode', () => {
  it('is 22 base64url characters that a command line never reads as an option', () => {
    // Without the rule, one code in 64 starts with "-": among 2,000 codes, all but certainly some.
    const codes = Array.from({ length: 2_000 }, () => newInviteCode());
    for (const code of codes) expect(code).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    expect(new Set(codes).size).toBe(codes.length);
  });
});
