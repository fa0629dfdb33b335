import {
  isGroupId,
  receiptCounts,
  type CallState,
  type GroupSummary,
  type CallSummary,
  type ClientEvent,
  type Contact,
  type StoredMessage,
} from '@privcomm/client';

/**
 * Where results go: stdout (plain text or one JSON object per line), and stderr for the rest.
 * Every line meant for people passes through `neutralise`, whatever it holds.
 */
export interface Streams {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

export type JsonObject = Record<string, unknown>;

/**
 * Characters a terminal acts on instead of showing: C0 controls (escape sequences, newline,
 * carriage return), DEL, C1 controls (0x9b is a one-byte CSI), and the invisible bidi and line
 * separators that reorder or split what is shown (U+202E prints text backwards).
 */
const TERMINAL_CONTROLS =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const SHORT_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Text for a terminal: every control character made visible as an escape (`\x1b`, `\n`,
 * `\u202e`), so that a contact's text or name can neither drive the terminal (recolour, clear
 * it, set the clipboard) nor forge a line of output. Human output only: --json stays exact.
 */
export const neutralise = (text: string): string =>
  text.replace(TERMINAL_CONTROLS, (char) => {
    const short = SHORT_ESCAPES[char];
    if (short) return short;
    const code = char.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });

export class Output {
  constructor(
    readonly json: boolean,
    private readonly streams: Streams,
  ) {}

  /** One result: the object with --json, else the text lines. */
  result(object: JsonObject, text: string | string[]): void {
    if (this.json) this.streams.stdout.write(`${JSON.stringify(object)}\n`);
    else for (const line of [text].flat()) this.streams.stdout.write(`${neutralise(line)}\n`);
  }

  /** Progress and status for people: always on stderr, so that stdout stays clean for --json. */
  status(text: string): void {
    this.streams.stderr.write(`${neutralise(text)}\n`);
  }

  warn(text: string): void {
    this.streams.stderr.write(`privcomm: warning: ${neutralise(text)}\n`);
  }

  error(text: string): void {
    this.streams.stderr.write(`privcomm: ${neutralise(text)}\n`);
  }
}

export const formatTime = (ms: number): string =>
  `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}Z`;

/** Names for account ids: contacts by name, this account as "you". */
export class Names {
  private readonly byId: Map<string, string>;
  private readonly groupTitles: Map<string, string>;
  constructor(
    readonly self: string,
    contacts: readonly Contact[],
    groups: readonly { groupId: string; title: string }[] = [],
  ) {
    this.byId = new Map(contacts.map((c) => [c.accountId, c.name]));
    this.groupTitles = new Map(groups.map((g) => [g.groupId, g.title]));
  }
  /** Whether a conversation is a group's (its id is a group id, not an account id). */
  isGroup(conversation: string): boolean {
    return isGroupId(conversation);
  }
  groupLabel(groupId: string): string {
    return `group ${this.groupTitles.get(groupId) ?? groupId}`;
  }
  contact(accountId: string): string | undefined {
    return this.byId.get(accountId);
  }
  label(accountId: string): string {
    return accountId === this.self ? 'you' : (this.byId.get(accountId) ?? accountId);
  }
}

/**
 * A group message this account sent: each member it went to with its state (`recipients`), and
 * how many have it and read it (`receipts`). One entry per member, not per device.
 */
const recipientsJson = (message: StoredMessage, names: Names): JsonObject => {
  if (message.recipients === undefined) return {};
  const counts = receiptCounts(message);
  return {
    recipients: Object.entries(message.recipients).map(([accountId, status]) => ({
      accountId,
      ...(names.contact(accountId) === undefined ? {} : { contact: names.contact(accountId) }),
      status,
    })),
    receipts: { members: counts.members, delivered: counts.delivered, read: counts.read },
  };
};

/** "delivered to 3 of 4, read by 2 of 4", with "failed for erin; " before it if so. */
const recipientsText = (message: StoredMessage, names: Names): string | undefined => {
  const counts = receiptCounts(message);
  if (counts.members === 0) return undefined;
  const failed = counts.failed.length
    ? `failed for ${counts.failed.map((m) => names.label(m)).join(', ')}; `
    : '';
  const read = counts.read > 0 ? `, read by ${counts.read} of ${counts.members}` : '';
  return `${failed}delivered to ${counts.delivered} of ${counts.members}${read}`;
};

/** A group as JSON: the same object for create, add, remove, leave, list and info. */
export const groupJson = (group: GroupSummary, names: Names): JsonObject => ({
  type: 'group',
  groupId: group.groupId,
  title: group.title,
  version: group.version,
  member: group.member,
  admin: group.admin,
  members: group.members.map((m) => ({
    accountId: m.accountId,
    ...(names.contact(m.accountId) === undefined ? {} : { contact: names.contact(m.accountId) }),
    admin: m.admin,
  })),
});

/** What `send --group` (and the daemon's send with a group) answers. */
export const groupSentJson = (message: StoredMessage, title: string): JsonObject => ({
  type: 'sent',
  id: message.id,
  group: message.conversation,
  title,
  sentAt: message.sentAt,
  status: message.status,
  ...(message.recipients === undefined ? {} : { recipients: message.recipients }),
});

/** A stored message as JSON: the same object for receive, listen and history. */
export const messageJson = (message: StoredMessage, names: Names): JsonObject => {
  const incoming = message.direction === 'in';
  // What a message says of itself, the same in a group and between two.
  const details = {
    ...(message.senderDeviceId === undefined ? {} : { fromDevice: message.senderDeviceId }),
    text: message.text,
    sentAt: message.sentAt,
    receivedAt: message.receivedAt,
    status: message.status,
    ...(message.expiresAt === undefined ? {} : { expiresAt: message.expiresAt }),
    ...(message.deleted ? { deleted: true } : {}),
  };
  if (names.isGroup(message.conversation)) {
    const from = incoming ? (message.sender ?? '') : names.self;
    const contact = names.contact(from);
    return {
      type: 'message',
      id: message.id,
      conversation: message.conversation,
      group: message.conversation,
      direction: message.direction,
      from,
      ...(incoming && contact !== undefined ? { contact } : {}),
      ...details,
      ...recipientsJson(message, names),
    };
  }
  const contact = names.contact(message.conversation);
  return {
    type: 'message',
    id: message.id,
    conversation: message.conversation,
    ...(contact === undefined ? {} : { contact }),
    direction: message.direction,
    from: incoming ? message.conversation : names.self,
    to: incoming ? names.self : message.conversation,
    ...details,
  };
};

export const messageText = (
  message: StoredMessage,
  names: Names,
  options: { status?: boolean } = {},
): string => {
  const group = names.isGroup(message.conversation);
  const from =
    message.direction === 'out'
      ? 'you'
      : names.label(group ? (message.sender ?? '?') : message.conversation);
  const to = group
    ? names.groupLabel(message.conversation)
    : message.direction === 'in'
      ? 'you'
      : names.label(message.conversation);
  const text = message.deleted ? '(deleted)' : message.text;
  const status = options.status
    ? ` [${(group && recipientsText(message, names)) || message.status}]`
    : '';
  const timer =
    message.expiresAt === undefined ? '' : ` (disappears ${formatTime(message.expiresAt)})`;
  return `${formatTime(message.sentAt)}  ${from} → ${to}${status}: ${text}${timer}  (id ${message.id})`;
};

/** End reasons in words. */
export const REASON_TEXT: Record<CallSummary['reason'], string> = {
  'hung-up': 'hung up',
  declined: 'declined',
  busy: 'busy',
  'no-answer': 'no answer',
  failed: 'failed',
  'answered-elsewhere': 'answered on another device',
};

/** A call state change as JSON (`type: "call"`); undefined for idle. */
export const callStateJson = (state: CallState, names: Names): JsonObject | undefined => {
  if (state.status === 'idle') return undefined;
  const contact = names.contact(state.call.peer);
  return {
    type: 'call',
    status: state.status,
    callId: state.call.callId,
    peer: state.call.peer,
    ...(contact === undefined ? {} : { contact }),
    direction: state.call.direction,
  };
};

/** How a call went (`type: "call-ended"`): the same object for listen, call and answer. */
export const callSummaryJson = (summary: CallSummary, names: Names): JsonObject => {
  const contact = names.contact(summary.peer);
  return {
    type: 'call-ended',
    callId: summary.callId,
    peer: summary.peer,
    ...(contact === undefined ? {} : { contact }),
    direction: summary.direction,
    reason: summary.reason,
    ...(summary.detail === undefined ? {} : { detail: summary.detail }),
    connected: summary.connected,
    relay: summary.relay,
    relayOnly: summary.relayOnly,
    ...(summary.path === undefined ? {} : { path: summary.path }),
    durationMs: summary.durationMs,
    startedAt: summary.startedAt,
    endedAt: summary.endedAt,
  };
};

export const callSummaryText = (summary: CallSummary, names: Names): string => {
  const peer = names.label(summary.peer);
  const reason = REASON_TEXT[summary.reason] ?? summary.reason;
  if (!summary.connected) {
    const missed = summary.direction === 'incoming' && summary.reason === 'no-answer';
    return missed
      ? `missed call from ${peer}`
      : `call ${summary.direction === 'outgoing' ? 'to' : 'from'} ${peer} ended before it connected: ${reason}${summary.detail ? ` (${summary.detail})` : ''}`;
  }
  const via = summary.relay ? 'through the TURN relay' : 'direct';
  // "srflx to srflx over udp": which candidates carried the call, and how this side sent.
  const path = summary.path
    ? `, ${summary.path.local} to ${summary.path.remote}${summary.path.transport ? ` over ${summary.path.transport}` : ''}`
    : '';
  // A call that connected and then failed (its connection was lost) says why.
  const why = summary.detail && summary.reason === 'failed' ? `: ${summary.detail}` : '';
  return `call with ${peer} ended after ${(summary.durationMs / 1000).toFixed(1)} s (${reason}${why}; ${via}${path}${summary.relayOnly ? ', relay-only' : ''})`;
};

export const callStateText = (
  state: Exclude<CallState, { status: 'idle' }>,
  names: Names,
): string => {
  const peer = names.label(state.call.peer);
  switch (state.status) {
    case 'outgoing':
      return `calling ${peer}…`;
    case 'ringing':
      return `incoming call from ${peer} (call ${state.call.callId})`;
    case 'connecting':
      return `call with ${peer}: connecting…`;
    case 'connected':
      return `call with ${peer}: connected`;
    default:
      return `call with ${peer}: ended (${REASON_TEXT[state.reason]})`;
  }
};

/**
 * A core event as output, or undefined for events that are not shown (queue-empty and
 * disconnects are status; a redelivered envelope that was already handled is no news).
 */
export const eventOutput = (
  event: ClientEvent,
  names: Names,
): { json: JsonObject; text: string } | undefined => {
  switch (event.type) {
    case 'message':
      return { json: messageJson(event.message, names), text: messageText(event.message, names) };
    case 'receipt': {
      // In a group, the member whose receipt it is; the conversation is the group.
      const from = event.from ?? event.conversation;
      const group = names.isGroup(event.conversation);
      return {
        json: {
          type: 'receipt',
          receipt: event.receipt,
          conversation: event.conversation,
          ...(group ? { group: event.conversation } : {}),
          from,
          messageIds: event.messageIds,
        },
        text: `${names.label(from)} ${event.receipt === 'read' ? 'read' : 'received'} ${event.messageIds.length === 1 ? `message ${event.messageIds[0]}` : `${event.messageIds.length} messages`}${group ? ` in ${names.groupLabel(event.conversation)}` : ''}`,
      };
    }
    case 'typing':
      return {
        json: {
          type: 'typing',
          from: event.from,
          fromDevice: event.deviceId,
          typing: event.typing,
        },
        text: `${names.label(event.from)} ${event.typing ? 'is typing…' : 'stopped typing'}`,
      };
    case 'deleted':
      return {
        json: { type: 'deleted', conversation: event.conversation, messageId: event.messageId },
        text: `message ${event.messageId} with ${names.label(event.conversation)} was deleted for everyone`,
      };
    case 'timer':
      return {
        json: {
          type: 'timer',
          conversation: event.conversation,
          expireSeconds: event.expireSeconds,
        },
        text:
          event.expireSeconds > 0
            ? `messages with ${names.label(event.conversation)} now disappear after ${event.expireSeconds} s`
            : `disappearing messages with ${names.label(event.conversation)} are off`,
      };
    case 'contacts-synced':
      return {
        json: {
          type: 'contacts-synced',
          fromDevice: event.fromDevice,
          contacts: event.contacts.map(({ name, accountId }) => ({ name, accountId })),
        },
        text: `${event.contacts.length} contact${event.contacts.length === 1 ? '' : 's'} from your device ${event.fromDevice}: ${event.contacts.map((c) => c.name).join(', ')}`,
      };
    case 'contacts-requested':
      return {
        json: { type: 'contacts-requested', fromDevice: event.fromDevice },
        text: `your device ${event.fromDevice} asked for your contacts: sending them`,
      };
    case 'identity-changed':
      return {
        json: { type: 'identity-changed', accountId: event.accountId },
        text: `the safety number with ${names.label(event.accountId)} changed: compare it again with "privcomm safety-number ${names.label(event.accountId)}"`,
      };
    case 'decryption-failed':
      // A redelivery of an envelope already handled (its answer was lost): nothing new.
      if (event.reason === 'DUPLICATE_MESSAGE') return undefined;
      return {
        json: { type: 'decryption-failed', envelopeId: event.envelopeId, reason: event.reason },
        text: `a message could not be decrypted (${event.reason}); it was dropped`,
      };
    case 'call': {
      // The end of a call shows as its call-ended summary.
      if (event.state.status === 'idle' || event.state.status === 'ended') return undefined;
      const json = callStateJson(event.state, names);
      return json && { json, text: callStateText(event.state, names) };
    }
    case 'call-ended':
      return {
        json: callSummaryJson(event.summary, names),
        text: callSummaryText(event.summary, names),
      };
    case 'group':
      return {
        json: { type: 'group-changed', groupId: event.groupId },
        text: `group ${event.groupId} changed (privcomm group info ${event.groupId})`,
      };
    default:
      return undefined;
  }
};

/** "12345 67890 …": the 60 digits in 12 groups of 5. */
export const groupDigits = (digits: string): string[] => digits.match(/\d{5}/g) ?? [];
