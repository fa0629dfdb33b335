import type { CallSummary } from './calls/call-manager.ts';
import type { CallState } from './calls/call-state.ts';
import type { DeviceId } from '@privcomm/wire';
import type { ClientError } from './errors.ts';
import type { ClientSettings } from './settings.ts';
import type { Contact, StoredMessage } from './store.ts';

/**
 * The connection as an interface shows it:
 * - `offline`: not connected (never started, stopped, or waiting before the next attempt);
 * - `connecting`: an attempt is under way;
 * - `online`: connected and authenticated, envelopes flow;
 * - `stopped`: the relay refused for good (device removed, connected elsewhere); `error` says
 *   why, and only a new `start` tries again.
 */
export type ConnectionState = 'offline' | 'connecting' | 'online' | 'stopped';

export interface ConnectionStatus {
  readonly state: ConnectionState;
  /** Milliseconds until the next attempt, while offline between attempts. */
  readonly retryInMs?: number;
  /** Why the last attempt failed or the connection was lost (offline), or why it stopped. */
  readonly error?: ClientError;
}

export type ClientEvent =
  | { type: 'message'; message: StoredMessage }
  | {
      type: 'receipt';
      /** The account that sent the receipt, or the group of the messages (then see `from`). */
      conversation: string;
      /** In a group: the member whose receipt it is (only the message ids that it moved on). */
      from?: string;
      receipt: 'delivered' | 'read';
      messageIds: string[];
    }
  | { type: 'typing'; from: string; deviceId: number; typing: boolean }
  | { type: 'deleted'; conversation: string; messageId: string }
  | { type: 'timer'; conversation: string; expireSeconds: number }
  | { type: 'identity-changed'; accountId: string }
  /** Contacts another device of this account sent (linking, or `syncContacts` there). */
  | { type: 'contacts-synced'; fromDevice: number; contacts: Contact[] }
  /** A newly linked device asked for the contacts: `sendOwedReceipts` sends them. */
  | { type: 'contacts-requested'; fromDevice: number }
  | { type: 'decryption-failed'; envelopeId: string; reason: string }
  | { type: 'queue-empty' }
  | { type: 'disconnected'; code: number; reason: string }
  /** The connection kept by `start` changed state (also in `snapshot().connection`). */
  | { type: 'connection'; status: ConnectionStatus }
  /** A device joined this account (it asked for the contacts, or the relay listed it). */
  | { type: 'device-joined'; deviceId: DeviceId }
  /** A device left this account (removed here, or the relay no longer lists it). */
  | { type: 'device-removed'; deviceId: DeviceId }
  /** The settings changed (`updateSettings`). */
  | { type: 'settings'; settings: ClientSettings }
  /** The current call's microphone was muted or unmuted (calls/). */
  | { type: 'call-muted'; muted: boolean }
  /** The current call changed state (calls/). */
  | { type: 'call'; state: CallState }
  /** A call ended (also one answered busy or missed here). */
  | { type: 'call-ended'; summary: CallSummary }
  /** A group was created, or its state changed (members, admins, title): see `groups()`. */
  | { type: 'group'; groupId: string };
