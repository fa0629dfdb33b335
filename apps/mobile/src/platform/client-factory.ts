import {
  PrivcommClient,
  type AuthSigner,
  type ClientStore,
  type Profile,
  type SignalEngine,
} from '@privcomm/client';
import type { DevicePlatform } from './platform.ts';
import { AUTH_KEY_ENTRY, SecureStoreSigner } from './secure-signer.ts';

/** The device's parts that outlive one relay address: opened once per app start. */
export interface DeviceParts {
  readonly platform: DevicePlatform;
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  readonly signer: AuthSigner;
}

const openSigner = (platform: DevicePlatform): Promise<AuthSigner> =>
  platform.openSigner?.() ??
  SecureStoreSigner.loadOrCreate(platform.secrets, (n) => platform.randomBytes(n));

export const openDeviceParts = async (platform: DevicePlatform): Promise<DeviceParts> => {
  const [engine, store, signer] = await Promise.all([
    platform.openEngine(),
    platform.openStore(),
    openSigner(platform),
  ]);
  return { platform, engine, store, signer };
};

/**
 * The parts after a wipe, for a new start: the same store and `engine` (both empty now), and a
 * new relay login key, so that a new account is not tied to the old one by it. The web build's
 * login key is the bridge's: it stays there.
 */
const partsAfterWipe = async (parts: DeviceParts, engine: SignalEngine): Promise<DeviceParts> => {
  const { platform } = parts;
  if (!platform.openSigner) await platform.secrets.deleteItemAsync(AUTH_KEY_ENTRY);
  return { platform, engine, store: parts.store, signer: await openSigner(platform) };
};

/**
 * Opens the device's parts and finds the account they hold, if any. A store with a profile
 * beside an engine without an identity is a wipe that was interrupted (PrivcommClient.wipe
 * erases the engine first): it is finished here, and the app starts as new.
 */
export const startDevice = async (
  platform: DevicePlatform,
): Promise<{ parts: DeviceParts; profile: Profile | undefined }> => {
  const parts = await openDeviceParts(platform);
  const profile = await parts.store.profile();
  if (profile === undefined || (await parts.engine.localIdentity()) !== undefined)
    return { parts, profile };
  await parts.store.wipe();
  return { parts: await partsAfterWipe(parts, parts.engine), profile: undefined };
};

/**
 * After the relay deleted the account or removed this device: erases what the phone keeps (the
 * engine's keys and sessions, then the messages, contacts and profile; PrivcommClient.wipe) and
 * the login key, and returns the parts for a new start.
 */
export const wipeDevice = async (
  parts: DeviceParts,
  client: PrivcommClient,
): Promise<DeviceParts> => {
  await client.wipe();
  // The wiped engine is closed; its store opens again as a new, empty engine.
  return partsAfterWipe(parts, await parts.platform.openEngine());
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
