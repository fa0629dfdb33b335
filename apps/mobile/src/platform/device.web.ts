/**
 * The web build's platform (Metro picks this file over device.ts for `--platform web`): the
 * engine, the store and the login key are those of `privcomm daemon --web-bridge`, reached over
 * its loopback WebSocket (web-bridge.ts); the browser holds no private key. A development and
 * test tool, never a way to ship the app. Calls use the browser's own WebRTC (browser-calls.ts).
 */
import { browserCalls } from './browser-calls.ts';
import type { DevicePlatform } from './platform.ts';
import type { SecretStore } from './secrets.ts';
import {
  BridgeConnection,
  bridgeAddressFromPage,
  noBridgeAddress,
  relayTransport,
} from './web-bridge.ts';

const refuse = (): Promise<never> =>
  Promise.reject(new Error('the web build keeps no secrets in the browser: the bridge signs'));

/** Secrets stay in the daemon: the page asks it to sign, and keeps nothing itself. */
const noSecrets: SecretStore = {
  getItemAsync: refuse,
  setItemAsync: refuse,
  deleteItemAsync: refuse,
};

/** The platform over one bridge connection, opened when the app first asks for a part. */
const webPlatform = (): DevicePlatform => {
  let connection: Promise<BridgeConnection> | undefined;
  const bridge = (): Promise<BridgeConnection> => {
    const address = bridgeAddressFromPage();
    connection ??= address ? BridgeConnection.connect(address) : Promise.reject(noBridgeAddress());
    return connection;
  };
  const calls = browserCalls();
  return {
    openEngine: async () => (await bridge()).openEngine(),
    openStore: async () => (await bridge()).store(),
    openSigner: async () => (await bridge()).signer(),
    secrets: noSecrets,
    transport: (relayUrl) => relayTransport(relayUrl, bridge),
    randomBytes: (length) => globalThis.crypto.getRandomValues(new Uint8Array(length)),
    // The browser's RTCPeerConnection and microphone; the TURN credentials come from the relay.
    ...(calls ? { calls } : {}),
  };
};

export const devicePlatform: DevicePlatform = webPlatform();
