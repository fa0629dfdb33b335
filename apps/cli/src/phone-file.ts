import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * This profile's own published phone number, in E.164, in `<profile>/phone` (mode 0600). Kept on
 * the device so that the CLI can publish its token again after the relay rotates its discovery
 * key; the relay never sees it. Absent when no number is published from this device.
 */

const phoneFile = (dir: string): string => path.join(dir, 'phone');

export const readOwnPhone = (dir: string): string | undefined => {
  try {
    const value = readFileSync(phoneFile(dir), 'utf8').trim();
    return value === '' ? undefined : value;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
};

export const saveOwnPhone = (dir: string, number: string): void => {
  writeFileSync(phoneFile(dir), `${number}\n`, { mode: 0o600 });
};

export const forgetOwnPhone = (dir: string): void => {
  rmSync(phoneFile(dir), { force: true });
};
