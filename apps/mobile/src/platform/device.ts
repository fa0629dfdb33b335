/**
 * The Android device's platform: the only module that imports native modules. Never imported
 * by tests (react-native-webrtc throws at import under Jest).
 */
import { Camera, CameraView } from 'expo-camera';
import { getRandomBytes } from 'expo-crypto';
import * as SecureStore from 'expo-secure-store';
import { openDatabaseAsync } from 'expo-sqlite';
import { createElement } from 'react';
import { PermissionsAndroid, StyleSheet } from 'react-native';
import InCallManager from 'react-native-incall-manager';
import { mediaDevices, RTCPeerConnection } from 'react-native-webrtc';
import {
  CallError,
  type CallMedia,
  type MediaTrackLike,
  type PeerConnectionConstructor,
} from '@privcomm/client';
import { openAndroidEngine } from '../../modules/privcomm-engine';
import type { DevicePlatform, QrScanner } from './platform.ts';
import type { ExpoSqliteDatabase } from './expo-sqlite-driver.ts';
import { openEncryptedAppStore } from './encrypted-store.ts';
import type { SecretStore } from './secrets.ts';
import { createTransport } from './transport.ts';

/**
 * The microphone as the call's audio; react-native-webrtc plays the remote track itself. The
 * permission is asked first: refused, the core ends the call with MICROPHONE_DENIED and the call
 * screen says where to allow it.
 */
const microphone = async (): Promise<CallMedia> => {
  const granted = await PermissionsAndroid.request(PermissionsAndroid.PERMISSIONS.RECORD_AUDIO);
  if (granted !== PermissionsAndroid.RESULTS.GRANTED)
    throw new CallError('MICROPHONE_DENIED', 'the microphone permission was refused');
  const stream = await mediaDevices.getUserMedia({ audio: true, video: false });
  const track = stream.getAudioTracks()[0];
  if (!track) throw new Error('no microphone track');
  return {
    track: track as unknown as MediaTrackLike,
    onRemoteTrack: () => undefined,
    stop: () => stream.getTracks().forEach((t) => t.stop()),
  };
};

/** expo-camera's barcode scanner, reading QR codes only. */
const cameraScanner: QrScanner = {
  requestPermission: async () => (await Camera.requestCameraPermissionsAsync()).granted,
  View: ({ onScanned }) =>
    createElement(CameraView, {
      style: StyleSheet.absoluteFill,
      facing: 'back',
      barcodeScannerSettings: { barcodeTypes: ['qr'] },
      onBarcodeScanned: (result: { data: string }) => onScanned(result.data),
    }),
};

const secrets: SecretStore = {
  getItemAsync: (key) => SecureStore.getItemAsync(key),
  setItemAsync: (key, value) => SecureStore.setItemAsync(key, value),
  deleteItemAsync: (key) => SecureStore.deleteItemAsync(key),
};

export const devicePlatform: DevicePlatform = {
  // The Android SignalEngine (modules/privcomm-engine): libsignal-android in Kotlin, private
  // records sealed under a non-exportable Keystore key; keys never enter JavaScript.
  openEngine: () => openAndroidEngine(),
  // SQLCipher (expo-sqlite's useSQLCipher, app.json), keyed from the secure store.
  openStore: async () =>
    openEncryptedAppStore(
      (await openDatabaseAsync('privcomm.db')) as unknown as ExpoSqliteDatabase,
      secrets,
      getRandomBytes,
    ),
  secrets,
  transport: (relayUrl) => createTransport(relayUrl),
  randomBytes: (length) => getRandomBytes(length),
  calls: {
    webrtc: { RTCPeerConnection: RTCPeerConnection as unknown as PeerConnectionConstructor },
    media: microphone,
  },
  // Only the speakerphone switch of react-native-incall-manager: its start() would take a
  // proximity wake lock, and WAKE_LOCK is a blocked permission (app.json).
  audioRoute: { setSpeaker: (on) => InCallManager.setForceSpeakerphoneOn(on) },
  scanner: cameraScanner,
};
