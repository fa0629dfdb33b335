import { isAccountId, isDeviceId, type AccountId, type DeviceId } from '@privcomm/wire';

/**
 * Branded ids for tests' fixtures, made by wire's guards (a fixture that is not a valid id fails
 * loudly here instead of slipping through a cast).
 */
export const accountIdOf = (value: string): AccountId => {
  if (!isAccountId(value)) throw new Error(`test fixture: "${value}" is not an account id`);
  return value;
};

export const deviceIdOf = (value: number): DeviceId => {
  if (!isDeviceId(value)) throw new Error(`test fixture: ${value} is not a device id`);
  return value;
};

/** A random account id (a version-4 UUID from the platform's CSPRNG, as real ids are). */
export const randomAccountId = (): AccountId => accountIdOf(globalThis.crypto.randomUUID());
