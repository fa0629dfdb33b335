import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  fromBase64,
  toBase64,
  toBase64Url,
  fromBase64Url,
  utf8Decode,
  utf8Encode,
} from '../src/bytes.ts';
import {
  ContentError,
  decodeContent,
  encodeContent,
  MAX_SYNCED_CONTACTS,
  type Content,
} from '../src/content.ts';
import { laterStatus } from '../src/store.ts';
import { accountIdOf } from '../src/testing/ids.ts';
import { createGroup, makeChange, MAX_GROUP_MEMBERS } from '../src/groups/index.ts';
import { ENCRYPTION_OVERHEAD_BYTES, MAX_CONTENT_BYTES } from '@privcomm/wire';

describe('bytes', () => {
  it('utf8 agrees with Node for any string and round-trips', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (text) => {
        const encoded = utf8Encode(text);
        expect(Buffer.from(encoded).equals(Buffer.from(text, 'utf8'))).toBe(true);
        expect(utf8Decode(encoded)).toBe(text);
      }),
    );
  });

  it('utf8Decode refuses malformed input', () => {
    for (const bad of [
      [0xff],
      [0xc0, 0x80],
      [0xe0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xc3],
    ]) {
      expect(() => utf8Decode(Uint8Array.from(bad))).toThrow();
    }
  });

  it('base64 agrees with Node and round-trips', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(toBase64(bytes)).toBe(Buffer.from(bytes).toString('base64'));
        expect(fromBase64(toBase64(bytes))).toEqual(bytes);
        expect(toBase64Url(bytes)).toBe(Buffer.from(bytes).toString('base64url'));
        expect(fromBase64Url(toBase64Url(bytes))).toEqual(bytes);
      }),
    );
    expect(() => fromBase64('a$b=')).toThrow();
  });
});

describe('content format', () => {
  const samples: Content[] = [
    { kind: 'text', id: 'a', sentAt: 1, text: 'héllo 👋' },
    { kind: 'text', id: 'b', sentAt: 2, text: '', expireSeconds: 30 },
    { kind: 'receipt', id: 'c', sentAt: 3, receipt: 'read', messageIds: ['a', 'b'] },
    { kind: 'typing', id: 'd', sentAt: 4, typing: true },
    { kind: 'delete', id: 'e', sentAt: 5, target: 'a' },
    { kind: 'timer', id: 'f', sentAt: 6, expireSeconds: 0 },
    {
      kind: 'sync',
      id: 'g',
      sentAt: 7,
      to: accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'),
      content: { kind: 'text', id: 'h', sentAt: 7, text: 'hi' },
    },
    {
      kind: 'contacts',
      id: 'i',
      sentAt: 8,
      contacts: [{ accountId: accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'), name: 'bob' }],
    },
    { kind: 'contacts-request', id: 'j', sentAt: 9 },
  ];

  it.each(samples)('round-trips %o padded to 160-byte blocks', (content) => {
    const encoded = encodeContent(content);
    expect(encoded.length % 160).toBe(0);
    expect(decodeContent(encoded)).toEqual(content);
  });

  it('pads so that texts of similar length look alike', () => {
    const short = encodeContent({ kind: 'text', id: 'x', sentAt: 1, text: 'a' });
    const longer = encodeContent({ kind: 'text', id: 'x', sentAt: 1, text: 'a'.repeat(60) });
    expect(short.length).toBe(longer.length);
  });

  it('refuses bad padding, other versions, unknown kinds and nested syncs', () => {
    const bad = (json: unknown) => {
      const bytes = utf8Encode(JSON.stringify(json));
      const padded = new Uint8Array(160);
      padded.set(bytes);
      padded[bytes.length] = 0x80;
      return padded;
    };
    expect(() => decodeContent(new Uint8Array(160))).toThrow(ContentError);
    expect(() => decodeContent(bad({ v: 2, kind: 'text', id: 'a', sentAt: 1, text: 'x' }))).toThrow(
      /version/,
    );
    expect(() => decodeContent(bad({ v: 1, kind: 'poll', id: 'a', sentAt: 1 }))).toThrow(
      /unknown kind/,
    );
    expect(() => decodeContent(bad({ v: 1, kind: 'text', id: 'a', sentAt: 1 }))).toThrow(
      ContentError,
    );
    const nested = {
      v: 1,
      kind: 'sync',
      id: 'a',
      sentAt: 1,
      to: 'x',
      content: { kind: 'sync', id: 'b', sentAt: 1, to: 'y', content: {} },
    };
    expect(() => decodeContent(bad(nested))).toThrow(/bad sync/);
  });

  it('refuses synced contacts that are not an account id with a name, or too many', () => {
    const contacts = (list: unknown) =>
      encodeContent({ kind: 'contacts', id: 'a', sentAt: 1, contacts: list as never });
    const bob = { accountId: accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'), name: 'bob' };
    expect(decodeContent(contacts([{ ...bob, name: '  bob ' }]))).toMatchObject({
      contacts: [bob],
    });
    for (const bad of [
      'bob',
      [{ name: 'bob' }],
      [{ ...bob, accountId: bob.accountId.toUpperCase() }],
      [{ ...bob, name: ' ' }],
      [{ ...bob, name: 'x'.repeat(201) }],
      [{ ...bob, name: bob.accountId.toUpperCase() }],
      Array.from({ length: MAX_SYNCED_CONTACTS + 1 }, () => bob),
    ]) {
      expect(() => decodeContent(contacts(bad)), JSON.stringify(bad).slice(0, 80)).toThrow(
        /bad contact/,
      );
    }
  });

  it('decoding arbitrary bytes gives a content or a ContentError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        try {
          decodeContent(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(ContentError);
        }
      }),
    );
  });
});

describe('group contents', () => {
  const alice = accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11');
  const bob = accountIdOf('3c5a1e2d-4b7f-4d66-8d1f-7b1e3a2a0b22');
  const groupId = '00112233445566778899aabbccddeeff';
  const distributionId = '5d1f2e3a-6b7c-4d8e-9f0a-1b2c3d4e5f60';
  const created = createGroup(groupId, alice, 'Team', [bob]);
  const renamed = makeChange(created.state, bob, { action: 'title', title: 'Team 2' });
  const samples: Content[] = [
    { kind: 'group-change', id: 'a', sentAt: 1, change: created },
    { kind: 'group-change', id: 'b', sentAt: 2, change: renamed },
    {
      kind: 'group',
      id: 'c',
      sentAt: 3,
      groupId,
      content: { kind: 'text', id: 'c', sentAt: 3, text: 'hi all', expireSeconds: 60 },
    },
    {
      kind: 'group',
      id: 'd',
      sentAt: 4,
      groupId,
      content: { kind: 'receipt', id: 'd', sentAt: 4, receipt: 'read', messageIds: ['c'] },
    },
    { kind: 'sender-key', id: 'e', sentAt: 5, groupId, distributionId, message: 'AAEC/w==' },
    { kind: 'sender-key-request', id: 'f', sentAt: 6, distributionId },
    // A receipt for group messages, sent pairwise to their author.
    { kind: 'receipt', id: 'g', sentAt: 7, receipt: 'delivered', messageIds: ['c'], groupId },
  ];

  it.each(samples)('round-trips %o', (content) => {
    expect(decodeContent(encodeContent(content))).toEqual(content);
  });

  it('refuses a receipt whose group id is not one', () => {
    for (const bad of ['', 'Family', groupId.toUpperCase(), 42, null]) {
      const receipt = { kind: 'receipt', id: 'g', sentAt: 7, receipt: 'read', messageIds: ['c'] };
      expect(() => decodeContent(encodeContent({ ...receipt, groupId: bad } as never))).toThrow(
        /bad receipt/,
      );
    }
  });

  it('a change of a group with the most members still fits in one envelope', () => {
    const members = Array.from({ length: MAX_GROUP_MEMBERS - 1 }, () =>
      accountIdOf(globalThis.crypto.randomUUID()),
    );
    const big = createGroup(groupId, alice, 'x'.repeat(128), members);
    const encoded = encodeContent({
      kind: 'group-change',
      id: 'x'.repeat(64),
      sentAt: 1,
      change: big,
    });
    expect(encoded.length).toBeLessThanOrEqual(MAX_CONTENT_BYTES - ENCRYPTION_OVERHEAD_BYTES);
    expect(decodeContent(encoded)).toMatchObject({ change: big });
  });

  const raw = (json: Record<string, unknown>) => {
    const bytes = utf8Encode(JSON.stringify({ v: 1, id: 'a', sentAt: 1, ...json }));
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes);
    padded[bytes.length] = 0x80;
    return padded;
  };

  it('refuses malformed group contents', () => {
    const change = created as unknown as Record<string, unknown>;
    const state = created.state as unknown as Record<string, unknown>;
    const bad: Record<string, unknown>[] = [
      { kind: 'group-change', change: { ...change, action: 'demote' } },
      { kind: 'group-change', change: { ...change, author: 'alice' } },
      { kind: 'group-change', change: { ...change, base: 'abc' } },
      { kind: 'group-change', change: { ...change, state: { ...state, groupId: 'G' } } },
      { kind: 'group-change', change: { ...change, state: { ...state, title: '' } } },
      // Members out of order (a state has one canonical form, which its hash covers).
      {
        kind: 'group-change',
        change: { ...change, state: { ...state, members: [...created.state.members].reverse() } },
      },
      {
        kind: 'group-change',
        change: { ...change, state: { ...state, members: [{ accountId: alice, admin: 'yes' }] } },
      },
      // Well-formed contents that have no place in a group.
      {
        kind: 'group',
        groupId,
        content: { kind: 'call', id: 'x', sentAt: 1, callId: 'abcdefgh', signal: { type: 'busy' } },
      },
      { kind: 'group', groupId, content: { kind: 'contacts-request', id: 'x', sentAt: 1 } },
      { kind: 'group', groupId, content: { kind: 'sync', id: 'x', sentAt: 1 } },
      {
        kind: 'group',
        groupId,
        content: { kind: 'group', id: 'x', sentAt: 1, groupId, content: {} },
      },
      { kind: 'group', groupId: 'x', content: { kind: 'text', id: 'x', sentAt: 1, text: '' } },
      { kind: 'sender-key', groupId, distributionId: 'nope', message: 'AA==' },
      { kind: 'sender-key', groupId, distributionId, message: '$$' },
      { kind: 'sender-key', groupId, distributionId, message: 'A'.repeat(2000) },
      { kind: 'sender-key-request', distributionId: distributionId.toUpperCase() },
    ];
    for (const json of bad) {
      expect(() => decodeContent(raw(json)), JSON.stringify(json).slice(0, 120)).toThrow(
        ContentError,
      );
    }
  });

  it('any mutation of a group change decodes to a well-formed state or a ContentError', () => {
    const field = fc.constantFrom(
      'action',
      'author',
      'base',
      'groupId',
      'title',
      'version',
      'members',
    );
    const anything = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.anything(), { maxLength: 3 }),
    );
    fc.assert(
      fc.property(field, anything, (name, value) => {
        const state: Record<string, unknown> = { ...created.state };
        const change: Record<string, unknown> = { ...created, state };
        if (name in state) state[name] = value;
        else change[name] = value;
        try {
          const decoded = decodeContent(raw({ kind: 'group-change', change }));
          expect(decoded.kind).toBe('group-change');
        } catch (error) {
          expect(error).toBeInstanceOf(ContentError);
        }
      }),
    );
  });
});

describe('message status', () => {
  it('never goes backwards, except out of failed', () => {
    expect(laterStatus('read', 'delivered')).toBe('read');
    expect(laterStatus('sent', 'delivered')).toBe('delivered');
    expect(laterStatus('failed', 'sent')).toBe('sent');
  });
});
