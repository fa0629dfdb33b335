import type { PrivcommClient } from '@privcomm/client';
import type { DevicePlatform } from '../platform/platform.ts';
import { createContext, useContext, useEffect, useState, type ReactNode } from 'react';
import { useStore } from 'zustand';
import type { StoreApi } from 'zustand/vanilla';
import { createAccountStore, type AccountState, type AccountStore } from './account-store.ts';
import { createCallStore, type CallStoreState } from './call-store.ts';

interface AccountContextValue {
  readonly account: AccountStore;
  readonly calls: StoreApi<CallStoreState>;
}

const AccountContext = createContext<AccountContextValue | undefined>(undefined);

/**
 * Creates the account's and the call's stores for `client` and provides them to the screens
 * below; they live as long as this provider (no module-level store: two providers, two
 * accounts, as the tests render two app instances side by side).
 */
export const AccountProvider = ({
  client,
  children,
}: {
  client: PrivcommClient;
  children: ReactNode;
}) => {
  const [value] = useState<AccountContextValue>(() => ({
    account: createAccountStore(client),
    calls: createCallStore(client).store,
  }));
  useEffect(() => {
    value.account.start();
    return () => {
      // The app is closing: stop listening, close the socket and the engine.
      void value.account.dispose().then(() => client.close());
    };
  }, [value, client]);
  return <AccountContext.Provider value={value}>{children}</AccountContext.Provider>;
};

const useAccountContext = (): AccountContextValue => {
  const value = useContext(AccountContext);
  if (!value) throw new Error('useAccount outside AccountProvider');
  return value;
};

/** The account store's actions and client. */
export const useAccountStore = (): AccountStore => useAccountContext().account;

/** A slice of the account's state; re-renders when it changes. */
export const useAccount = <T,>(selector: (state: AccountState) => T): T =>
  useStore(useAccountContext().account.store, selector);

const DeviceContext = createContext<DevicePlatform | undefined>(undefined);

/** The device's platform, for what screens take from it directly (scanner, audio route). */
export const DeviceProvider = ({
  platform,
  children,
}: {
  platform: DevicePlatform;
  children: ReactNode;
}) => <DeviceContext.Provider value={platform}>{children}</DeviceContext.Provider>;

export const useDevice = (): DevicePlatform => {
  const value = useContext(DeviceContext);
  if (!value) throw new Error('useDevice outside DeviceProvider');
  return value;
};

export const useCall = <T,>(selector: (state: CallStoreState) => T): T =>
  useStore(useAccountContext().calls, selector);
