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

/** A random version-4 UUID (account ids are UUIDs), without platform crypto. */
export const randomAccountId = (): AccountId => {
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(Math.random() * 4)] as string;
  const s = hex.join('');
  return accountIdOf(
    `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`,
  );
};
