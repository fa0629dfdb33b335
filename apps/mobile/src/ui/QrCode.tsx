import qrcode from 'qrcode-generator';
import { useMemo } from 'react';
import { View } from 'react-native';

/** Modules of white around the code: scanners need a quiet zone of four. */
const QUIET = 4;

/**
 * A QR code drawn with Views (no SVG, no native module): each row is a line of dark and light
 * runs. Always dark on white, whatever the theme: scanners read that best.
 */
export const QrCode = ({
  value,
  label,
  size = 240,
}: {
  value: string;
  /** What a screen reader says; the encoded text is its value. */
  label: string;
  size?: number;
}) => {
  const rows = useMemo(() => {
    const qr = qrcode(0, 'M');
    qr.addData(value, 'Byte');
    qr.make();
    const count = qr.getModuleCount();
    return Array.from({ length: count }, (_, row) => {
      const runs: { dark: boolean; length: number }[] = [];
      for (let col = 0; col < count; col += 1) {
        const dark = qr.isDark(row, col);
        const last = runs[runs.length - 1];
        if (last && last.dark === dark) last.length += 1;
        else runs.push({ dark, length: 1 });
      }
      return runs;
    });
  }, [value]);
  const cell = Math.max(2, Math.floor(size / (rows.length + 2 * QUIET)));
  return (
    <View
      accessible
      accessibilityRole="image"
      accessibilityLabel={label}
      accessibilityValue={{ text: value }}
      style={{ backgroundColor: '#ffffff', padding: cell * QUIET, alignSelf: 'center' }}
    >
      {rows.map((runs, row) => (
        <View key={row} style={{ flexDirection: 'row' }}>
          {runs.map((run, i) => (
            <View
              key={i}
              style={{
                width: run.length * cell,
                height: cell,
                backgroundColor: run.dark ? '#000000' : '#ffffff',
              }}
            />
          ))}
        </View>
      ))}
    </View>
  );
};
