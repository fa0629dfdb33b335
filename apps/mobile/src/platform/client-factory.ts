import {
  PrivcommClient,
  type AuthSigner,
  type ClientStore,
  type SignalEngine,
} from '@privcomm/client';
import type { DevicePlatform } from './platform.ts';
import { SecureStoreSigner } from './secure-signer.ts';

/** The device's parts that outlive one relay address: opened once per app start. */
export interface DeviceParts {
  readonly platform: DevicePlatform;
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  readonly signer: AuthSigner;
}

export const openDeviceParts = async (platform: DevicePlatform): Promise<DeviceParts> => {
  const [engine, store, signer] = await Promise.all([
    platform.openEngine(),
    platform.openStore(),
    platform.openSigner?.() ??
      SecureStoreSigner.loadOrCreate(platform.secrets, (n) => platform.randomBytes(n)),
  ]);
  return { platform, engine, store, signer };
};

/** A client core for `relayUrl` over the device's parts (onboarding may try several). */
export const openClient = (parts: DeviceParts, relayUrl: string): Promise<PrivcommClient> =>
  PrivcommClient.open({
    transport: parts.platform.transport(relayUrl),
    engine: parts.engine,
    store: parts.store,
    signer: parts.signer,
    randomBytes: (n) => parts.platform.randomBytes(n),
    ...(parts.platform.calls ? { calls: parts.platform.calls } : {}),
  });
