import { homedir } from 'node:os';
import path from 'node:path';

/**
 * What is known about a profile without opening it: kept apart from profile.ts, which loads the
 * client core, SQLite and libsignal, so that help and usage errors load none of them.
 */

export const DEFAULT_SERVER = 'http://localhost:8000';

/** The files of a profile directory. */
export const PROFILE_FILES = {
  engine: 'engine.sqlite',
  client: 'client.sqlite',
  authKey: 'auth.key',
} as const;

/**
 * A profile that cannot be used as it is (missing, damaged, unreadable). Raised before anything
 * in the profile is written: a profile that could not be read is left exactly as it was.
 */
export class ProfileError extends Error {
  override readonly name = 'ProfileError';
}

export const defaultProfileDir = (env: NodeJS.ProcessEnv): string =>
  env.PRIVCOMM_PROFILE && env.PRIVCOMM_PROFILE.trim() !== ''
    ? env.PRIVCOMM_PROFILE
    : path.join(env.HOME && env.HOME.trim() !== '' ? env.HOME : homedir(), '.privcomm');
