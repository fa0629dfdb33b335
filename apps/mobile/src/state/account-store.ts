import {
  type AccountId,
  type ClientEvent,
  type ClientSettings,
  type ConnectionStatus,
  type Contact,
  type IdentityState,
  type PrivcommClient,
  type Profile,
  type StoredMessage,
} from '@privcomm/client';
import { createStore, type StoreApi } from 'zustand/vanilla';

export interface ConversationView {
  readonly accountId: AccountId;
  /** The contact's name, or the account id for a message request. */
  readonly name: string;
  readonly lastMessage?: StoredMessage;
  /** Received messages the core has not marked read. */
  readonly unread: number;
  /** Someone who is not a contact wrote (the core's message request). */
  readonly request: boolean;
}

/**
 * What the screens of one account render: the client core's snapshot and histories as plain
 * data, refreshed after every core event. Nothing here is decided: statuses, identities and
 * conversations are the core's; this only copies them into a Zustand store.
 */
export interface AccountState {
  readonly profile: Profile | undefined;
  readonly contacts: Contact[];
  readonly conversations: ConversationView[];
  /** Histories of the conversations a screen has opened, oldest first. */
  readonly histories: Record<string, StoredMessage[]>;
  /** The engine's identity state of each contact (changed, verified). */
  readonly identities: Record<string, IdentityState | undefined>;
  /** Contacts typing right now (online-only indicator). */
  readonly typing: Record<string, boolean>;
  /** The connection the core keeps (its reconnector: state, next attempt, last error). */
  readonly connection: ConnectionStatus;
  readonly settings: ClientSettings;
  /** Accounts this device blocked (the core's list). */
  readonly blocked: AccountId[];
  /** Devices that joined or left this account since the app started (the core's events). */
  readonly deviceChanges: number;
}

export interface AccountStore {
  readonly client: PrivcommClient;
  readonly store: StoreApi<AccountState>;
  /** Re-reads everything from the core. */
  refresh(): Promise<void>;
  /** Keeps `accountId`'s history in the store from now on. */
  watchConversation(accountId: string): Promise<void>;
  unwatchConversation(accountId: string): void;
  /**
   * Keeps the message socket connected through the core's `start` (reconnecting by itself,
   * with backoff, after every loss) until `dispose`.
   */
  start(): void;
  dispose(): Promise<void>;
}

/** Disappearing messages are purged (by the core's snapshot) at least this often. */
const PURGE_INTERVAL_MS = 15_000;

/** One store per client (per account on this device), created by AccountProvider. */
export const createAccountStore = (client: PrivcommClient): AccountStore => {
  const store = createStore<AccountState>(() => ({
    profile: client.profile,
    contacts: [],
    conversations: [],
    histories: {},
    identities: {},
    typing: {},
    connection: { state: 'offline' },
    settings: client.settings,
    blocked: [],
    deviceChanges: 0,
  }));
  const watched = new Set<string>();
  let disposed = false;
  let running: Promise<void> | undefined;
  // Refreshes run one after another, so an older read never overwrites a newer one.
  let refreshing: Promise<void> = Promise.resolve();

  const readAll = async (): Promise<void> => {
    const snapshot = await client.snapshot();
    const conversations: ConversationView[] = [];
    const histories: Record<string, StoredMessage[]> = {};
    const identities: Record<string, IdentityState | undefined> = {};
    for (const summary of snapshot.conversations) {
      if (watched.has(summary.accountId))
        histories[summary.accountId] = await client.history(summary.accountId);
      identities[summary.accountId] = await client.identity(summary.accountId);
      conversations.push({
        accountId: summary.accountId,
        name: summary.name ?? summary.accountId,
        ...(summary.lastMessage ? { lastMessage: summary.lastMessage } : {}),
        unread: summary.unread,
        request: summary.request,
      });
    }
    // A conversation opened but not in the list (a request just blocked or deleted): empty.
    for (const accountId of watched) histories[accountId] ??= await client.history(accountId);
    if (disposed) return;
    store.setState({
      profile: snapshot.profile,
      contacts: snapshot.contacts,
      conversations,
      histories,
      identities,
      connection: snapshot.connection,
      settings: snapshot.settings,
      blocked: snapshot.blocked,
    });
  };

  const refresh = (): Promise<void> => {
    refreshing = refreshing.then(readAll, readAll);
    return refreshing;
  };

  // Delivery receipts, the outbox and reconnection are the core's (`start`): nothing to
  // schedule here.
  const onEvent = (event: ClientEvent): void => {
    switch (event.type) {
      case 'typing':
        store.setState((s) => ({ typing: { ...s.typing, [event.from]: event.typing } }));
        return;
      case 'connection':
        store.setState({ connection: event.status });
        if (event.status.state === 'online') void refresh();
        return;
      case 'disconnected':
      case 'queue-empty':
        return;
      case 'settings':
        store.setState({ settings: event.settings });
        return;
      case 'device-joined':
      case 'device-removed':
        store.setState((s) => ({ deviceChanges: s.deviceChanges + 1 }));
        return;
      case 'message':
        if (event.message.direction === 'in')
          store.setState((s) => ({ typing: { ...s.typing, [event.message.conversation]: false } }));
        void refresh();
        return;
      case 'call':
      case 'call-ended':
      case 'call-muted':
        return; // the call store follows these
      default:
        void refresh();
    }
  };
  const unsubscribe = client.subscribe(onEvent);
  const purgeTimer = setInterval(() => void refresh().catch(() => undefined), PURGE_INTERVAL_MS);

  return {
    client,
    store,
    refresh,
    async watchConversation(accountId) {
      watched.add(accountId);
      await refresh();
    },
    unwatchConversation(accountId) {
      watched.delete(accountId);
    },
    start() {
      if (running) return;
      // Resolves at `stop`; rejects only when the relay refused this device for good, which
      // the 'connection' event (state 'stopped', with the error) already shows.
      running = client.start().catch(() => undefined);
      void refresh();
    },
    async dispose() {
      disposed = true;
      clearInterval(purgeTimer);
      unsubscribe();
      await client.stop();
      await running;
      await refreshing.catch(() => undefined);
    },
  };
};
