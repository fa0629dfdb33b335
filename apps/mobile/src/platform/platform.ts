import type {
  AuthSigner,
  CallOptions,
  ClientStore,
  SignalEngine,
  Transport,
} from '@privcomm/client';
import type { ComponentType } from 'react';
import type { SecretStore } from './secrets.ts';

/**
 * The camera as a QR-code scanner (expo-camera's barcode scanner on the device). Tests inject
 * one they drive; without one, scanning is not offered.
 */
export interface QrScanner {
  /** Asks for the camera permission if needed; false when refused. */
  requestPermission(): Promise<boolean>;
  /** The camera preview; calls `onScanned` with the text of each QR code it reads. */
  readonly View: ComponentType<{ onScanned: (data: string) => void }>;
}

/** Where a call's audio plays (the earpiece or the loudspeaker). */
export interface AudioRoute {
  setSpeaker(on: boolean): void | Promise<void>;
}

/**
 * Everything the app takes from the device, injected: the Android build passes the real
 * modules (device.ts), the web build a bridge to `privcomm daemon` (device.web.ts), tests pass the Node engine, SQLite through better-sqlite3, an in-memory
 * secret store and Node's network. Screens and stores only see this interface.
 */
export interface DevicePlatform {
  /** The device's SignalEngine (the Android engine keeps its keys behind the Keystore). */
  openEngine(): Promise<SignalEngine>;
  /** The client core's store (messages, contacts, outbox, profile). */
  openStore(): Promise<ClientStore>;
  readonly secrets: SecretStore;
  /**
   * The relay login key, where it is not a seed in `secrets`: the web build's is in the bridge
   * (device.web.ts). Absent, the key is read from `secrets` or created there.
   */
  openSigner?(): Promise<AuthSigner>;
  transport(relayUrl: string): Transport;
  /** A CSPRNG. */
  randomBytes(length: number): Uint8Array;
  /** WebRTC and call media (react-native-webrtc on the device); absent, calls cannot be placed. */
  readonly calls?: CallOptions;
  /** The loudspeaker in calls (react-native-incall-manager); absent, no speaker button. */
  readonly audioRoute?: AudioRoute;
  readonly scanner?: QrScanner;
}
