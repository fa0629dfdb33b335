/**
 * The Android device's platform: the only module that imports native modules. Never imported
 * by tests (react-native-webrtc throws at import under Jest).
 */
import { getRandomBytes } from 'expo-crypto';
import * as SecureStore from 'expo-secure-store';
import { openDatabaseAsync } from 'expo-sqlite';
import { mediaDevices, RTCPeerConnection } from 'react-native-webrtc';
import type { CallMedia, MediaTrackLike, PeerConnectionConstructor } from '@privcomm/client';
import { openAndroidEngine } from '../../modules/privcomm-engine';
import type { DevicePlatform } from './platform.ts';
import { openAppStore, type ExpoSqliteDatabase } from './expo-sqlite-driver.ts';
import { createTransport } from './transport.ts';

/** The microphone as the call's audio; react-native-webrtc plays the remote track itself. */
const microphone = async (): Promise<CallMedia> => {
  const stream = await mediaDevices.getUserMedia({ audio: true, video: false });
  const track = stream.getAudioTracks()[0];
  if (!track) throw new Error('no microphone track');
  return {
    track: track as unknown as MediaTrackLike,
    onRemoteTrack: () => undefined,
    stop: () => stream.getTracks().forEach((t) => t.stop()),
  };
};

export const devicePlatform: DevicePlatform = {
  // The Android SignalEngine (modules/privcomm-engine): libsignal-android in Kotlin, private
  // records sealed under a non-exportable Keystore key; keys never enter JavaScript.
  openEngine: () => openAndroidEngine(),
  openStore: async () =>
    openAppStore((await openDatabaseAsync('privcomm.db')) as unknown as ExpoSqliteDatabase),
  secrets: {
    getItemAsync: (key) => SecureStore.getItemAsync(key),
    setItemAsync: (key, value) => SecureStore.setItemAsync(key, value),
    deleteItemAsync: (key) => SecureStore.deleteItemAsync(key),
  },
  transport: (relayUrl) => createTransport(relayUrl),
  randomBytes: (length) => getRandomBytes(length),
  calls: {
    webrtc: { RTCPeerConnection: RTCPeerConnection as unknown as PeerConnectionConstructor },
    media: microphone,
  },
};
