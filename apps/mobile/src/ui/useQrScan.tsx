import type { ComponentType } from 'react';
import { useRef, useState } from 'react';
import { Text, View } from 'react-native';
import { useDevice } from '../state/context.tsx';
import { Button, Screen } from './components.tsx';
import { useTheme } from './theme.ts';

/** A refused camera permission, and where to allow it (each screen adds what to do instead). */
export const CAMERA_REFUSED =
  "privcomm may not use the camera, so it cannot scan. Allow it in Android's Settings › Apps › privcomm › Permissions.";

export interface QrScan {
  /** The device can scan (a scanner is injected); otherwise offer no Scan button. */
  readonly available: boolean;
  /** The camera is open: render <QrScanScreen scan={…} /> instead of the screen. */
  readonly scanning: boolean;
  /** The camera permission was refused at the last start (show CAMERA_REFUSED). */
  readonly refused: boolean;
  /** Asks for the camera permission, then opens the camera. */
  start(): Promise<void>;
  cancel(): void;
  readonly Camera: ComponentType<{ onScanned: (data: string) => void }> | undefined;
  readonly onScanned: (data: string) => void;
}

/**
 * Scanning one QR code with the device's scanner (DevicePlatform.scanner): the permission, the
 * camera while it looks, and `onCode` called once with the first code read. A camera reports
 * the same code many times a second; only the first one counts, and the camera closes.
 */
export const useQrScan = (onCode: (data: string) => void): QrScan => {
  const { scanner } = useDevice();
  const [scanning, setScanning] = useState(false);
  const [refused, setRefused] = useState(false);
  const scanned = useRef(false);

  return {
    available: scanner !== undefined,
    scanning: scanning && scanner !== undefined,
    refused,
    start: async () => {
      if (!scanner) return;
      setRefused(false);
      if (!(await scanner.requestPermission())) {
        setRefused(true);
        return;
      }
      scanned.current = false;
      setScanning(true);
    },
    cancel: () => setScanning(false),
    Camera: scanner?.View,
    onScanned: (data) => {
      if (scanned.current) return;
      scanned.current = true;
      setScanning(false);
      onCode(data);
    },
  };
};

/** The camera, full screen, with what to point it at and a Cancel. */
export const QrScanScreen = ({
  scan,
  title,
  instructions,
}: {
  scan: QrScan;
  title: string;
  instructions: string;
}) => {
  const theme = useTheme();
  const Camera = scan.Camera;
  return (
    <Screen title={title} actions={<Button label="Cancel" kind="plain" onPress={scan.cancel} />}>
      <Text style={{ color: theme.text }}>{instructions}</Text>
      <View style={{ flex: 1 }}>{Camera ? <Camera onScanned={scan.onScanned} /> : null}</View>
    </Screen>
  );
};
