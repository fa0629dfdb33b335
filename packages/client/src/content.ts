/**
 * What travels inside the encryption: a versioned JSON object, padded to 160-byte blocks so that
 * the ciphertext length reveals little about the text (Signal pads the same way). Contents of an
 * unknown kind or version raise ContentError; the receive pipeline records them as undecryptable
 * and acknowledges them rather than letting them block the queue.
 */

import { isAccountId, type AccountId } from '@privcomm/wire';
import { utf8Decode, utf8Encode } from './bytes.ts';
import { END_REASONS, type EndReason } from './calls/call-state.ts';
import { isDistributionId } from './engine.ts';
import { parseGroupChange } from './groups/group-codec.ts';
import { GroupError, isGroupId, type GroupChange, type GroupId } from './groups/group-state.ts';

export const CONTENT_VERSION = 1;
const BLOCK = 160;

export type Content =
  | { kind: 'text'; id: string; sentAt: number; text: string; expireSeconds?: number }
  | {
      kind: 'receipt';
      id: string;
      sentAt: number;
      receipt: 'delivered' | 'read';
      messageIds: string[];
      /**
       * For messages of a group (groups/group-receipts.ts): sent pairwise to their author, like
       * any receipt; the group id, inside the encryption, says where the messages are.
       */
      groupId?: GroupId;
    }
  | { kind: 'typing'; id: string; sentAt: number; typing: boolean }
  | { kind: 'delete'; id: string; sentAt: number; target: string }
  | { kind: 'timer'; id: string; sentAt: number; expireSeconds: number }
  /** To one's own other devices: a copy of what this device sent to `to`. */
  | { kind: 'sync'; id: string; sentAt: number; to: AccountId; content: Content }
  /** Call signaling (calls/): offer, answer and hangup are stored; ICE is online-only. */
  | { kind: 'call'; id: string; sentAt: number; callId: string; signal: CallSignal }
  /** To one's own other devices: contact names, added or renamed there (none removed). */
  | { kind: 'contacts'; id: string; sentAt: number; contacts: SyncedContact[] }
  /** From a newly linked device to the account's others: "send me the contacts". */
  | { kind: 'contacts-request'; id: string; sentAt: number }
  /**
   * Groups (groups/). A change of a group's state, sent pairwise to every member of the states
   * before and after it (and to the author's own other devices).
   */
  | { kind: 'group-change'; id: string; sentAt: number; change: GroupChange }
  /**
   * A message in a group: sent with the sender key to the other members (one upload), and
   * pairwise to the sender's own other devices as their copy. `content` is what a one-to-one
   * conversation would carry.
   */
  | { kind: 'group'; id: string; sentAt: number; groupId: GroupId; content: GroupInner }
  /** A member device's sender key for a group (libsignal's distribution message), pairwise. */
  | {
      kind: 'sender-key';
      id: string;
      sentAt: number;
      groupId: GroupId;
      distributionId: string;
      /** The SenderKeyDistributionMessage, base64. */
      message: string;
    }
  /** "I cannot decrypt what you sent under this distribution id: send me your sender key." */
  | { kind: 'sender-key-request'; id: string; sentAt: number; distributionId: string };

/** What a group message may carry. */
export type GroupInner = Extract<
  Content,
  { kind: 'text' | 'receipt' | 'typing' | 'delete' | 'timer' }
>;
const GROUP_INNER_KINDS: readonly string[] = ['text', 'receipt', 'typing', 'delete', 'timer'];

export interface SyncedContact {
  readonly accountId: AccountId;
  readonly name: string;
}

/** Contacts per message: 500 of them stay well below the relay's 96 KiB per envelope. */
export const MAX_SYNCED_CONTACTS = 500;
const MAX_CONTACT_NAME = 200;

/** One ICE candidate, as RTCIceCandidateInit carries it. Never stored: see calls/. */
export interface IceCandidateSignal {
  readonly candidate: string;
  readonly sdpMid?: string;
  readonly sdpMLineIndex?: number;
}

export type CallSignal =
  /** SDP without candidates or addresses (calls/sdp.ts strips them). */
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | { type: 'ice'; candidates: IceCandidateSignal[] }
  /** `code`: why a call failed on the sender's side (a stable error code such as TURN_NOT_CONFIGURED). */
  | { type: 'hangup'; reason: Exclude<EndReason, 'answered-elsewhere'>; code?: string }
  | { type: 'busy' };

const MAX_SDP = 32 * 1024;
/** A failure code in a hangup: an error code, never free text. */
const FAILURE_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const MAX_CANDIDATES = 32;
const CALL_ID = /^[A-Za-z0-9_-]{8,64}$/;

export type ContentKind = Content['kind'];

/**
 * Content that is not what this version sends. Its message is a fixed phrase, never a value
 * from the content: it goes to logs and to the 'decryption-failed' event.
 */
export class ContentError extends Error {
  override readonly name = 'ContentError';
}

/** How a text counts against MAX_TEXT_BYTES: the UTF-8 bytes of its JSON string, quotes aside. */
export const textBytes = (text: string): number => utf8Encode(JSON.stringify(text)).length - 2;

/** JSON, then 0x80, then zeros up to a multiple of 160 bytes. */
export const encodeContent = (content: Content): Uint8Array => {
  const json = utf8Encode(JSON.stringify({ v: CONTENT_VERSION, ...content }));
  const padded = new Uint8Array(Math.ceil((json.length + 1) / BLOCK) * BLOCK);
  padded.set(json, 0);
  padded[json.length] = 0x80;
  return padded;
};

const isString = (value: unknown): value is string => typeof value === 'string';
const isNumber = (value: unknown): value is number =>
  typeof value === 'number' && Number.isFinite(value);

const isMessageId = (value: unknown): value is string =>
  isString(value) && value.length > 0 && value.length <= 64;

const validate = (value: unknown, depth = 0): Content => {
  if (typeof value !== 'object' || value === null) throw new ContentError('not an object');
  const c = value as Record<string, unknown>;
  if (!isMessageId(c.id) || !isNumber(c.sentAt)) {
    throw new ContentError('missing id or sentAt');
  }
  const base = { id: c.id, sentAt: c.sentAt };
  switch (c.kind) {
    case 'text':
      if (!isString(c.text)) throw new ContentError('text without text');
      return {
        kind: 'text',
        ...base,
        text: c.text,
        ...(isNumber(c.expireSeconds) ? { expireSeconds: c.expireSeconds } : {}),
      };
    case 'receipt':
      if (
        (c.receipt !== 'delivered' && c.receipt !== 'read') ||
        !Array.isArray(c.messageIds) ||
        (c.groupId !== undefined && !isGroupId(c.groupId))
      ) {
        throw new ContentError('bad receipt');
      }
      return {
        kind: 'receipt',
        ...base,
        receipt: c.receipt,
        messageIds: c.messageIds.filter(isMessageId).slice(0, 1000),
        ...(c.groupId === undefined ? {} : { groupId: c.groupId }),
      };
    case 'typing':
      return { kind: 'typing', ...base, typing: c.typing === true };
    case 'delete':
      if (!isMessageId(c.target)) throw new ContentError('delete without target');
      return { kind: 'delete', ...base, target: c.target };
    case 'timer':
      if (!isNumber(c.expireSeconds) || c.expireSeconds < 0) throw new ContentError('bad timer');
      return { kind: 'timer', ...base, expireSeconds: c.expireSeconds };
    case 'sync':
      if (!isAccountId(c.to) || depth > 0) throw new ContentError('bad sync');
      return { kind: 'sync', ...base, to: c.to, content: validate(c.content, depth + 1) };
    case 'call':
      if (!isString(c.callId) || !CALL_ID.test(c.callId)) throw new ContentError('bad call id');
      return { kind: 'call', ...base, callId: c.callId, signal: validateSignal(c.signal) };
    case 'contacts':
      return { kind: 'contacts', ...base, contacts: validateContacts(c.contacts) };
    case 'contacts-request':
      return { kind: 'contacts-request', ...base };
    case 'group-change':
      return { kind: 'group-change', ...base, change: validateGroupChange(c.change) };
    case 'group': {
      if (!isGroupId(c.groupId) || depth > 0) throw new ContentError('bad group message');
      const inner = validate(c.content, depth + 1);
      if (!isGroupInner(inner)) throw new ContentError('bad group message');
      return { kind: 'group', ...base, groupId: c.groupId, content: inner };
    }
    case 'sender-key':
      if (
        !isGroupId(c.groupId) ||
        !isDistributionId(c.distributionId) ||
        !isString(c.message) ||
        c.message.length > MAX_SENDER_KEY_MESSAGE ||
        !BASE64.test(c.message)
      ) {
        throw new ContentError('bad sender key');
      }
      return {
        kind: 'sender-key',
        ...base,
        groupId: c.groupId,
        distributionId: c.distributionId,
        message: c.message,
      };
    case 'sender-key-request':
      if (!isDistributionId(c.distributionId)) throw new ContentError('bad sender key request');
      return { kind: 'sender-key-request', ...base, distributionId: c.distributionId };
    default:
      throw new ContentError('unknown kind');
  }
};

/** A group message carrying `inner` (its id and time are the inner content's). */
export const groupContent = (groupId: GroupId, inner: GroupInner): Content => ({
  kind: 'group',
  id: inner.id,
  sentAt: inner.sentAt,
  groupId,
  content: inner,
});

const isGroupInner = (content: Content): content is GroupInner =>
  GROUP_INNER_KINDS.includes(content.kind);

/** A SenderKeyDistributionMessage is about 100 bytes; base64 of far less than this. */
const MAX_SENDER_KEY_MESSAGE = 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const validateGroupChange = (value: unknown): GroupChange => {
  try {
    return parseGroupChange(value);
  } catch (error) {
    if (error instanceof GroupError) throw new ContentError('bad group change');
    throw error;
  }
};

const validateContacts = (value: unknown): SyncedContact[] => {
  if (!Array.isArray(value) || value.length > MAX_SYNCED_CONTACTS) {
    throw new ContentError('bad contacts');
  }
  return value.map((item: unknown) => {
    const c = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    const name = isString(c.name) ? c.name.trim() : '';
    if (!isAccountId(c.accountId)) {
      throw new ContentError('bad contact account id');
    }
    if (name === '' || name.length > MAX_CONTACT_NAME || isAccountId(name.toLowerCase())) {
      throw new ContentError('bad contact name');
    }
    return { accountId: c.accountId, name };
  });
};

const validateSignal = (value: unknown): CallSignal => {
  if (typeof value !== 'object' || value === null) throw new ContentError('bad call signal');
  const s = value as Record<string, unknown>;
  switch (s.type) {
    case 'offer':
    case 'answer':
      if (!isString(s.sdp) || s.sdp.length > MAX_SDP) throw new ContentError('bad sdp');
      return { type: s.type, sdp: s.sdp };
    case 'ice': {
      if (!Array.isArray(s.candidates) || s.candidates.length > MAX_CANDIDATES) {
        throw new ContentError('bad candidates');
      }
      const candidates = s.candidates.map((item: unknown): IceCandidateSignal => {
        const c = (typeof item === 'object' && item !== null ? item : {}) as Record<
          string,
          unknown
        >;
        if (!isString(c.candidate) || c.candidate.length > 1024) {
          throw new ContentError('bad candidate');
        }
        return {
          candidate: c.candidate,
          ...(isString(c.sdpMid) && c.sdpMid.length <= 64 ? { sdpMid: c.sdpMid } : {}),
          ...(isNumber(c.sdpMLineIndex) && Number.isInteger(c.sdpMLineIndex)
            ? { sdpMLineIndex: c.sdpMLineIndex }
            : {}),
        };
      });
      return { type: 'ice', candidates };
    }
    case 'hangup': {
      const reason = END_REASONS.find((r) => r === s.reason && r !== 'answered-elsewhere');
      if (reason === undefined || reason === 'answered-elsewhere') {
        throw new ContentError('bad hangup reason');
      }
      // A code that is not one (free text, too long) is dropped: the hangup itself still counts.
      const code = isString(s.code) && FAILURE_CODE.test(s.code) ? s.code : undefined;
      return { type: 'hangup', reason, ...(code === undefined ? {} : { code }) };
    }
    case 'busy':
      return { type: 'busy' };
    default:
      throw new ContentError('unknown call signal');
  }
};

export const decodeContent = (padded: Uint8Array): Content => {
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end -= 1;
  if (end < 0 || padded[end] !== 0x80) throw new ContentError('bad padding');
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decode(padded.subarray(0, end)));
  } catch {
    throw new ContentError('not JSON');
  }
  const version = (parsed as { v?: unknown } | null)?.v;
  if (version !== CONTENT_VERSION) throw new ContentError('unsupported version');
  return validate(parsed);
};
