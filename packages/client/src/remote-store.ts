import { isAccountId, isDeviceId } from '@privcomm/wire';
import { fromBase64, toBase64 } from './bytes.ts';
import { parseGroupLog } from './groups/group-codec.ts';
import { isGroupId } from './groups/group-state.ts';
import type {
  ClientStore,
  Contact,
  HeldEnvelope,
  MessageChange,
  MessageStatus,
  OutboxEntry,
  OwnSenderKey,
  Profile,
  RecipientStatus,
  StoredGroup,
  StoredMessage,
} from './store.ts';

/**
 * A ClientStore in another process, reached over a channel that carries JSON: the app's web
 * build keeps its store in `privcomm daemon --web-bridge` (a browser has no SQLite that
 * outlives a reload, and the store must sit next to the engine). Both ends live here, on one
 * table of methods: RemoteClientStore sends, serveClientStore answers, and each checks what it
 * receives (ids with wire's guards, every field's type), as at any boundary.
 */

/** Something that arrived over the channel is not what the method takes or gives. */
export class StoreRecordError extends Error {
  override readonly name = 'StoreRecordError';
}

interface Codec<T> {
  encode(value: T): unknown;
  decode(json: unknown, what: string): T;
}

type Json = Record<string, unknown>;

const fail = (what: string, expected: string): never => {
  throw new StoreRecordError(`${what} must be ${expected}`);
};
const record = (json: unknown, what: string): Json =>
  typeof json === 'object' && json !== null && !Array.isArray(json)
    ? (json as Json)
    : fail(what, 'an object');
const plain = <T>(check: (json: unknown) => json is T, expected: string): Codec<T> => ({
  encode: (value) => value,
  decode: (json, what) => (check(json) ? json : fail(what, expected)),
});
const str = plain((j): j is string => typeof j === 'string', 'a string');
const num = plain(
  (j): j is number => typeof j === 'number' && Number.isFinite(j),
  'a finite number',
);
const bool = plain((j): j is boolean => typeof j === 'boolean', 'true or false');
const none: Codec<void> = { encode: () => null, decode: () => undefined };
const optional = <T>(codec: Codec<T>): Codec<T | undefined> => ({
  encode: (value) => (value === undefined ? null : codec.encode(value)),
  decode: (json, what) => (json === null ? undefined : codec.decode(json, what)),
});
const array = <T>(codec: Codec<T>): Codec<T[]> => ({
  encode: (values) => values.map((value) => codec.encode(value)),
  decode: (json, what) =>
    Array.isArray(json)
      ? json.map((item, i) => codec.decode(item, `${what}[${i}]`))
      : fail(what, 'an array'),
});
const accountId = plain(isAccountId, 'an account id');
const deviceId = plain(isDeviceId, 'a device id');
/** An optional field: absent and null both mean "not set". */
const field = <T>(json: Json, name: string, codec: Codec<T>, what: string): { [k: string]: T } =>
  json[name] === undefined || json[name] === null
    ? {}
    : { [name]: codec.decode(json[name], `${what}.${name}`) };

const profile: Codec<Profile> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    return {
      relayUrl: str.decode(r.relayUrl, `${what}.relayUrl`),
      accountId: accountId.decode(r.accountId, `${what}.accountId`),
      deviceId: deviceId.decode(r.deviceId, `${what}.deviceId`),
      ...field(r, 'name', str, what),
      keysRotatedAt: num.decode(r.keysRotatedAt, `${what}.keysRotatedAt`),
    };
  },
};

const contact: Codec<Contact> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    return {
      accountId: accountId.decode(r.accountId, `${what}.accountId`),
      name: str.decode(r.name, `${what}.name`),
      expireSeconds: num.decode(r.expireSeconds, `${what}.expireSeconds`),
    };
  },
};

const STATUSES: readonly MessageStatus[] = ['sending', 'sent', 'delivered', 'read', 'failed'];
const status = plain(
  (j): j is MessageStatus => STATUSES.includes(j as MessageStatus),
  STATUSES.join(', '),
);
const RECIPIENT_STATUSES: readonly RecipientStatus[] = ['failed', 'sent', 'delivered', 'read'];
/** A group message's recipients: account ids to their states. */
const recipients: Codec<Readonly<Record<string, RecipientStatus>>> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    for (const [member, state] of Object.entries(r)) {
      if (!isAccountId(member) || !RECIPIENT_STATUSES.includes(state as RecipientStatus))
        fail(`${what}.${member}`, `an account id with ${RECIPIENT_STATUSES.join(', ')}`);
    }
    return r as Record<string, RecipientStatus>;
  },
};
const direction = plain((j): j is 'in' | 'out' => j === 'in' || j === 'out', '"in" or "out"');

const message: Codec<StoredMessage> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    return {
      id: str.decode(r.id, `${what}.id`),
      conversation: str.decode(r.conversation, `${what}.conversation`),
      direction: direction.decode(r.direction, `${what}.direction`),
      ...field(r, 'senderDeviceId', num, what),
      ...field(r, 'sender', accountId, what),
      text: str.decode(r.text, `${what}.text`),
      sentAt: num.decode(r.sentAt, `${what}.sentAt`),
      receivedAt: num.decode(r.receivedAt, `${what}.receivedAt`),
      status: status.decode(r.status, `${what}.status`),
      ...field(r, 'expiresAt', num, what),
      ...field(r, 'deleted', bool, what),
      ...field(r, 'recipients', recipients, what),
    };
  },
};

/** A change may clear `expiresAt` or `deleted`: those keys cross as null. */
const messageChange: Codec<MessageChange> = {
  encode: (value) =>
    Object.fromEntries(Object.entries(value).map(([key, v]) => [key, v === undefined ? null : v])),
  decode: (json, what) => {
    const r = record(json, what);
    const known = ['status', 'text', 'deleted', 'expiresAt', 'recipients'];
    const unknown = Object.keys(r).filter((key) => !known.includes(key));
    if (unknown.length > 0) fail(what, `free of ${unknown.join(', ')}`);
    const change: { -readonly [K in keyof MessageChange]: MessageChange[K] } = {};
    if ('status' in r) change.status = status.decode(r.status, `${what}.status`);
    if ('text' in r) change.text = str.decode(r.text, `${what}.text`);
    if ('deleted' in r) change.deleted = optional(bool).decode(r.deleted, `${what}.deleted`);
    if ('expiresAt' in r) change.expiresAt = optional(num).decode(r.expiresAt, `${what}.expiresAt`);
    if ('recipients' in r)
      change.recipients = optional(recipients).decode(r.recipients, `${what}.recipients`);
    return change;
  },
};

const bytes = (json: unknown, what: string): Uint8Array => {
  try {
    return fromBase64(str.decode(json, what));
  } catch (error) {
    if (error instanceof StoreRecordError) throw error;
    return fail(what, 'base64');
  }
};

const groupId = plain(isGroupId, 'a group id');

const group: Codec<StoredGroup> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    let log;
    try {
      log = parseGroupLog(r.log);
    } catch {
      return fail(`${what}.log`, 'a group log');
    }
    return {
      groupId: groupId.decode(r.groupId, `${what}.groupId`),
      log,
      expireSeconds: num.decode(r.expireSeconds, `${what}.expireSeconds`),
    };
  },
};

const ownSenderKey: Codec<OwnSenderKey> = {
  encode: (value) => value,
  decode: (json, what) => {
    const r = record(json, what);
    return {
      groupId: groupId.decode(r.groupId, `${what}.groupId`),
      distributionId: str.decode(r.distributionId, `${what}.distributionId`),
      createdAt: num.decode(r.createdAt, `${what}.createdAt`),
    };
  },
};

const heldEnvelope: Codec<HeldEnvelope> = {
  encode: (value) => ({ ...value, content: toBase64(value.content) }),
  decode: (json, what) => {
    const r = record(json, what);
    return {
      envelopeId: str.decode(r.envelopeId, `${what}.envelopeId`),
      sender: accountId.decode(r.sender, `${what}.sender`),
      senderDeviceId: deviceId.decode(r.senderDeviceId, `${what}.senderDeviceId`),
      distributionId: str.decode(r.distributionId, `${what}.distributionId`),
      type: num.decode(r.type, `${what}.type`),
      content: bytes(r.content, `${what}.content`),
      receivedAt: num.decode(r.receivedAt, `${what}.receivedAt`),
    };
  },
};

const outboxEntry: Codec<OutboxEntry> = {
  encode: (value) => ({ ...value, content: toBase64(value.content) }),
  decode: (json, what) => {
    const r = record(json, what);
    const content = bytes(r.content, `${what}.content`);
    return {
      id: str.decode(r.id, `${what}.id`),
      recipient: accountId.decode(r.recipient, `${what}.recipient`),
      content,
      online: bool.decode(r.online, `${what}.online`),
      urgent: bool.decode(r.urgent, `${what}.urgent`),
      createdAt: num.decode(r.createdAt, `${what}.createdAt`),
      ...field(r, 'notBefore', num, what),
      ...field(r, 'group', groupId, what),
    };
  },
};

interface MethodCodecs {
  // Codec's methods are bivariant in T, so every codec is a Codec<unknown> here.
  readonly args: readonly Codec<unknown>[];
  readonly result: Codec<unknown>;
}

/** Every ClientStore method: what its arguments and its result are on the channel. */
const METHODS = {
  profile: { args: [], result: optional(profile) },
  saveProfile: { args: [profile], result: none },
  contacts: { args: [], result: array(contact) },
  contact: { args: [str], result: optional(contact) },
  saveContact: { args: [contact], result: none },
  addMessage: { args: [message], result: bool },
  message: { args: [str, str], result: optional(message) },
  updateMessage: { args: [str, str, messageChange], result: none },
  messages: { args: [str], result: array(message) },
  removeExpired: { args: [num], result: array(message) },
  isProcessed: { args: [str], result: bool },
  markProcessed: { args: [str, num, num], result: none },
  outbox: { args: [], result: array(outboxEntry) },
  addOutbox: { args: [outboxEntry], result: none },
  removeOutbox: { args: [str], result: none },
  conversationIds: { args: [], result: array(str) },
  deleteConversation: { args: [str], result: none },
  value: { args: [str], result: optional(str) },
  saveValue: { args: [str, str], result: none },
  groups: { args: [], result: array(group) },
  group: { args: [str], result: optional(group) },
  saveGroup: { args: [group], result: none },
  ownSenderKey: { args: [str], result: optional(ownSenderKey) },
  ownSenderKeyByDistribution: { args: [str], result: optional(ownSenderKey) },
  saveOwnSenderKey: { args: [ownSenderKey], result: none },
  senderKeyRecipients: { args: [str], result: array(str) },
  addSenderKeyRecipients: { args: [str, array(str)], result: none },
  removeSenderKeyRecipients: { args: [str, array(str)], result: none },
  holdEnvelope: { args: [heldEnvelope], result: none },
  heldEnvelopes: { args: [], result: array(heldEnvelope) },
  releaseEnvelope: { args: [str], result: none },
  wipe: { args: [], result: none },
} as const satisfies Record<keyof ClientStore, MethodCodecs>;

type StoreMethod = keyof typeof METHODS;

const isStoreMethod = (name: string): name is StoreMethod => Object.hasOwn(METHODS, name);

/** Carries one store call (its JSON arguments) to the other end; resolves with its JSON result. */
export type StoreChannel = (method: string, args: unknown[]) => Promise<unknown>;

const remoteMethod =
  (channel: StoreChannel, name: StoreMethod) =>
  async (...args: unknown[]): Promise<unknown> => {
    const codecs: MethodCodecs = METHODS[name];
    const json = await channel(
      name,
      codecs.args.map((codec, i) => codec.encode(args[i])),
    );
    return codecs.result.decode(json, `the store's answer to ${name}`);
  };

/** The ClientStore at the other end of `channel`; every answer is checked. */
export const remoteClientStore = (channel: StoreChannel): ClientStore =>
  Object.fromEntries(
    Object.keys(METHODS).map((name) => [name, remoteMethod(channel, name as StoreMethod)]),
  ) as unknown as ClientStore;

/**
 * Answers one call from a RemoteClientStore with `store`: an unknown method, a wrong number of
 * arguments or an argument of the wrong shape is a StoreRecordError, before the store is touched.
 */
export const serveClientStore =
  (store: ClientStore) =>
  async (method: string, args: unknown): Promise<unknown> => {
    if (!isStoreMethod(method)) throw new StoreRecordError(`no store method "${method}"`);
    const codecs: MethodCodecs = METHODS[method];
    if (!Array.isArray(args) || args.length !== codecs.args.length)
      throw new StoreRecordError(`${method} takes ${codecs.args.length} arguments, as an array`);
    const decoded = codecs.args.map((codec, i) =>
      codec.decode(args[i], `${method}'s argument ${i + 1}`),
    );
    const call = store[method] as (...values: unknown[]) => Promise<unknown>;
    return codecs.result.encode(await call.apply(store, decoded));
  };
