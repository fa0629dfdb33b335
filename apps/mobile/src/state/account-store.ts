import {
  ClientError,
  type AccountId,
  type ClientEvent,
  type Contact,
  type IdentityState,
  type PrivcommClient,
  type Profile,
  type StoredMessage,
} from '@privcomm/client';
import { createStore, type StoreApi } from 'zustand/vanilla';

export interface ConversationView {
  readonly accountId: AccountId;
  readonly name: string;
  readonly lastMessage?: StoredMessage;
  /** Received messages the core has not marked read. */
  readonly unread: number;
}

export type ConnectionState = 'offline' | 'connecting' | 'online';

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
  readonly connection: ConnectionState;
  /** Why the last connection attempt failed, as the core said it. */
  readonly connectionError: { code: string; message: string } | undefined;
}

export interface AccountStore {
  readonly client: PrivcommClient;
  readonly store: StoreApi<AccountState>;
  /** Re-reads everything from the core. */
  refresh(): Promise<void>;
  /** Keeps `accountId`'s history in the store from now on. */
  watchConversation(accountId: string): Promise<void>;
  unwatchConversation(accountId: string): void;
  /** Connects the message socket (after registering, or at start). */
  connect(): Promise<void>;
  dispose(): Promise<void>;
}

/** Disappearing messages are purged (by the core's snapshot) at least this often. */
const PURGE_INTERVAL_MS = 15_000;

/** Delivery receipts are sent once the burst of envelopes that caused them is acknowledged. */
const RECEIPT_DELAY_MS = 300;

const describe = (error: unknown): { code: string; message: string } =>
  error instanceof ClientError
    ? { code: error.code, message: error.message }
    : { code: 'UNKNOWN', message: String((error as Error)?.message ?? error) };

/** One store per client (per account on this device), created by AccountProvider. */
export const createAccountStore = (client: PrivcommClient): AccountStore => {
  const store = createStore<AccountState>(() => ({
    profile: client.profile,
    contacts: [],
    conversations: [],
    histories: {},
    identities: {},
    typing: {},
    connection: 'offline',
    connectionError: undefined,
  }));
  const watched = new Set<string>();
  let disposed = false;
  let receiptTimer: ReturnType<typeof setTimeout> | undefined;
  // Refreshes run one after another, so an older read never overwrites a newer one.
  let refreshing: Promise<void> = Promise.resolve();

  const readAll = async (): Promise<void> => {
    const snapshot = await client.snapshot();
    const conversations: ConversationView[] = [];
    const histories: Record<string, StoredMessage[]> = {};
    const identities: Record<string, IdentityState | undefined> = {};
    for (const summary of snapshot.conversations) {
      const history = await client.history(summary.accountId);
      if (watched.has(summary.accountId)) histories[summary.accountId] = history;
      identities[summary.accountId] = await client.identity(summary.accountId);
      conversations.push({
        accountId: summary.accountId,
        name: summary.name ?? summary.accountId,
        ...(summary.lastMessage ? { lastMessage: summary.lastMessage } : {}),
        unread: history.filter((m) => m.direction === 'in' && m.status !== 'read').length,
      });
    }
    if (disposed) return;
    store.setState({
      profile: snapshot.profile,
      contacts: snapshot.contacts,
      conversations,
      histories,
      identities,
    });
  };

  const refresh = (): Promise<void> => {
    refreshing = refreshing.then(readAll, readAll);
    return refreshing;
  };

  const scheduleReceipts = (): void => {
    clearTimeout(receiptTimer);
    receiptTimer = setTimeout(() => {
      if (!disposed) void client.sendOwedReceipts().catch(() => undefined);
    }, RECEIPT_DELAY_MS);
  };

  const onEvent = (event: ClientEvent): void => {
    switch (event.type) {
      case 'typing':
        store.setState((s) => ({ typing: { ...s.typing, [event.from]: event.typing } }));
        return;
      case 'disconnected':
        store.setState({ connection: 'offline' });
        return;
      case 'queue-empty':
        scheduleReceipts();
        return;
      case 'message':
        if (event.message.direction === 'in')
          store.setState((s) => ({ typing: { ...s.typing, [event.message.conversation]: false } }));
        scheduleReceipts();
        void refresh();
        return;
      case 'call':
      case 'call-ended':
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
    async connect() {
      store.setState({ connection: 'connecting', connectionError: undefined });
      try {
        await client.connect();
        if (!disposed) store.setState({ connection: 'online' });
      } catch (error) {
        if (!disposed) store.setState({ connection: 'offline', connectionError: describe(error) });
      }
      await refresh();
    },
    async dispose() {
      disposed = true;
      clearTimeout(receiptTimer);
      clearInterval(purgeTimer);
      unsubscribe();
      await refreshing.catch(() => undefined);
    },
  };
};
