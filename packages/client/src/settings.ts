import { isAccountId, type AccountId } from '@privcomm/wire';
import type { ClientLogger } from './logger.ts';
import type { ClientStore } from './store.ts';

/**
 * What the person using this device chose, kept in the client store and honoured by the core
 * (never by an interface):
 * - `readReceipts` off: reading a conversation sends no "read" receipt (delivery receipts still
 *   go: they only say the device has the message);
 * - `typingIndicators` off: this device sends none and shows none;
 * - `relayOnlyCalls` on: calls go through the relay's TURN server even with verified contacts
 *   (they always do with contacts not verified), so no peer learns this device's address.
 */
export interface ClientSettings {
  readonly readReceipts: boolean;
  readonly typingIndicators: boolean;
  readonly relayOnlyCalls: boolean;
}

export const DEFAULT_SETTINGS: ClientSettings = {
  readReceipts: true,
  typingIndicators: true,
  relayOnlyCalls: false,
};

const SETTINGS_KEY = 'settings.v1';
const BLOCKED_KEY = 'blocked.v1';

const parseJson = (text: string | undefined, logger: ClientLogger, what: string): unknown => {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    logger.log('warn', `stored ${what} unreadable`, 'defaults used');
    return undefined;
  }
};

/** The stored settings; a missing or damaged record gives the defaults for what is missing. */
export const loadSettings = async (
  store: ClientStore,
  logger: ClientLogger,
): Promise<ClientSettings> => {
  const stored = parseJson(await store.value(SETTINGS_KEY), logger, 'settings');
  const record = (typeof stored === 'object' && stored !== null ? stored : {}) as Record<
    string,
    unknown
  >;
  const flag = (key: keyof ClientSettings): boolean =>
    typeof record[key] === 'boolean' ? record[key] : DEFAULT_SETTINGS[key];
  return {
    readReceipts: flag('readReceipts'),
    typingIndicators: flag('typingIndicators'),
    relayOnlyCalls: flag('relayOnlyCalls'),
  };
};

export const saveSettings = (store: ClientStore, settings: ClientSettings): Promise<void> =>
  store.saveValue(SETTINGS_KEY, JSON.stringify(settings));

/** The accounts this device blocked: their messages, calls and typing are dropped unread. */
export const loadBlocked = async (
  store: ClientStore,
  logger: ClientLogger,
): Promise<Set<AccountId>> => {
  const stored = parseJson(await store.value(BLOCKED_KEY), logger, 'blocked accounts');
  return new Set(Array.isArray(stored) ? stored.filter(isAccountId) : []);
};

export const saveBlocked = (store: ClientStore, blocked: ReadonlySet<AccountId>): Promise<void> =>
  store.saveValue(BLOCKED_KEY, JSON.stringify([...blocked]));
