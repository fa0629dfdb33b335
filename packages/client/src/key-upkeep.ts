import { toBase64 } from './bytes.ts';
import type { SignalEngine } from './engine.ts';
import type { AuthSigner, RelayApi } from './relay-api.ts';
import { wirePreKey, wireSignedKey } from './relay-api.ts';
import type { ClientStore, Profile } from './store.ts';

/**
 * Refill one-time keys below this many, with this many. Half the batch, so that keys taken
 * between two upkeeps (the relay hands out a bounded number per hour) rarely empty the store.
 */
const PREKEY_LOW_WATER = 50;
const PREKEY_BATCH = 100;
/** Signed and last-resort prekeys are replaced this often. */
const KEY_ROTATION_MS = 2 * 24 * 60 * 60 * 1000;

/** The keys a new device (registered or linked) presents to the relay. */
export const newDeviceKeys = async (engine: SignalEngine, signer: AuthSigner) => {
  const identity = (await engine.localIdentity()) ?? (await engine.createIdentity());
  return {
    identity,
    fields: {
      registrationId: identity.registrationId,
      authKey: toBase64(await signer.publicKey()),
      signedPreKey: wireSignedKey(await engine.generateSignedPreKey()),
      kyberLastResortPreKey: wireSignedKey(await engine.generateKyberLastResortPreKey()),
    },
  };
};

export interface KeyUpkeepDeps {
  readonly api: Pick<RelayApi, 'keyCounts' | 'uploadKeys'>;
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  now(): number;
}

/**
 * Keeps one-time prekeys above the low-water mark and rotates the long-lived ones; returns the
 * profile with its new rotation time (saved), or the same profile when nothing rotated.
 */
export const maintainKeys = async (deps: KeyUpkeepDeps, profile: Profile): Promise<Profile> => {
  const { api, engine } = deps;
  const counts = await api.keyCounts();
  const upload: Record<string, unknown> = {};
  if (counts.preKeys < PREKEY_LOW_WATER) {
    upload.preKeys = (await engine.generatePreKeys(PREKEY_BATCH)).map(wirePreKey);
  }
  if (counts.kyberPreKeys < PREKEY_LOW_WATER) {
    upload.kyberPreKeys = (await engine.generateKyberPreKeys(PREKEY_BATCH)).map(wireSignedKey);
  }
  const rotate = deps.now() - profile.keysRotatedAt >= KEY_ROTATION_MS;
  if (rotate) {
    upload.signedPreKey = wireSignedKey(await engine.generateSignedPreKey());
    upload.kyberLastResortPreKey = wireSignedKey(await engine.generateKyberLastResortPreKey());
  }
  if (Object.keys(upload).length > 0) await api.uploadKeys(upload);
  if (!rotate) return profile;
  const rotated = { ...profile, keysRotatedAt: deps.now() };
  await deps.store.saveProfile(rotated);
  return rotated;
};
