import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import {
  PrivcommClient,
  StoreFormatError,
  type CallOptions,
  type Profile,
  type SignalEngine,
  type SqlStore,
  type SyncCopyDelay,
} from '@privcomm/client';
import { openNodeEngine } from '@privcomm/engine-node';
import { FileSigner, SignerFileError } from './file-signer.ts';
import { nodeTransport, type RelayWatch } from './node-transport.ts';
import { DEFAULT_SERVER, defaultProfileDir, PROFILE_FILES, ProfileError } from './profile-paths.ts';
import { openClientStore } from './sqlite-driver.ts';

export { DEFAULT_SERVER, defaultProfileDir, PROFILE_FILES, ProfileError };

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

type FileState = 'missing' | 'empty' | 'present';

const statOrUndefined = (file: string): Stats | undefined => {
  try {
    return statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ProfileError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`);
  }
};

/** Looks at one file without changing it: missing, empty, or present (and, for SQLite, a database). */
const inspect = (file: string, kind: 'sqlite' | 'key', what: string): FileState => {
  const stats = statOrUndefined(file);
  if (!stats) return 'missing';
  if (!stats.isFile()) throw new ProfileError(`${file} is not a file`);
  if (stats.size === 0) return 'empty';
  if (kind === 'sqlite') {
    const header = Buffer.alloc(SQLITE_HEADER.length);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (error) {
      throw new ProfileError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`);
    }
    try {
      readSync(fd, header, 0, header.length, 0);
    } finally {
      closeSync(fd);
    }
    if (!header.equals(SQLITE_HEADER)) throw damaged(file, what, 'it is not a SQLite database');
  }
  return 'present';
};

const damaged = (file: string, what: string, why: string): ProfileError =>
  new ProfileError(
    `the profile's ${what} (${file}) is damaged: ${why}. Nothing was changed; restore the file from a backup, or use another --profile`,
  );

export interface OpenProfileOptions {
  readonly dir: string;
  /** register and link may start a new profile; every other command needs an existing one. */
  readonly create: boolean;
  /** --server or PRIVCOMM_SERVER, if given: overrides the server stored in the profile. */
  readonly serverOverride?: string;
  readonly now?: () => number;
  /** WebRTC and call settings, for the commands that place or answer calls. */
  readonly calls?: CallOptions;
  /** What the transport learns about the relay during the run (errors, retries). */
  readonly relay?: RelayWatch;
  /** PRIVCOMM_SYNC_DELAY, if set: the wait of copies to this account's other devices. */
  readonly syncCopyDelay?: SyncCopyDelay;
}

/** An opened profile: its client, and what it was opened with. */
export interface OpenedProfile {
  readonly dir: string;
  readonly client: PrivcommClient;
  readonly store: SqlStore;
  /** The client's engine and login key, for `daemon --web-bridge`, which serves them to a browser. */
  readonly engine: SignalEngine;
  readonly signer: FileSigner;
  /** The relay this invocation talks to. */
  readonly server: string;
  /** The profile as stored (undefined before register/link). */
  readonly profile: Profile | undefined;
  close(): Promise<void>;
  /**
   * For a register or link that failed: closes the profile and removes every file (and folder)
   * this opening created, so that the profile directory is as it was before. Files that were
   * there before are left alone (an empty one is emptied again).
   */
  discardNew(): Promise<void>;
}

/**
 * Opens the profile directory: checks every file first (a damaged or foreign file stops here,
 * with nothing written), then opens the client store, the engine and the auth key, creating
 * the missing ones only for a profile that has no account yet.
 */
export const openProfile = async (options: OpenProfileOptions): Promise<OpenedProfile> => {
  const dir = path.resolve(options.dir);
  const stats = statOrUndefined(dir);
  /** The topmost folder this opening created (the profile folder, or a parent of it). */
  let createdDir: string | undefined;
  if (!stats) {
    if (!options.create) {
      throw new ProfileError(
        `there is no profile at ${dir}: run "privcomm register" (or "privcomm link") first, or pass --profile DIR`,
      );
    }
    createdDir = mkdirSync(dir, { recursive: true, mode: 0o700 }) ?? dir;
  } else if (!stats.isDirectory()) {
    throw new ProfileError(`the profile ${dir} is not a directory; pass --profile DIR`);
  }

  const files = {
    client: path.join(dir, PROFILE_FILES.client),
    engine: path.join(dir, PROFILE_FILES.engine),
    authKey: path.join(dir, PROFILE_FILES.authKey),
  };
  /** What was in the folder before (names, and which were empty): for discardNew. */
  const before = new Map<string, boolean>(
    options.create && createdDir === undefined
      ? readdirSync(dir).map((name) => [name, statSync(path.join(dir, name)).size === 0])
      : [],
  );
  const clientState = inspect(files.client, 'sqlite', 'client store');
  const engineState = inspect(files.engine, 'sqlite', 'key store');
  const keyState = inspect(files.authKey, 'key', 'device key');

  let signer: FileSigner | undefined;
  if (keyState !== 'missing') {
    try {
      signer = FileSigner.load(files.authKey);
    } catch (error) {
      if (error instanceof SignerFileError)
        throw damaged(files.authKey, 'device key', error.message);
      throw error;
    }
  }

  // The client store says whether this profile has an account. Opened without creating it, so
  // that a profile without one is not touched until we know the other files are sound.
  let store: SqlStore | undefined;
  let profile: Profile | undefined;
  if (clientState === 'present') {
    try {
      store = await openClientStore(files.client, { create: false });
      profile = await store.profile();
    } catch (error) {
      await store?.close();
      const why =
        error instanceof StoreFormatError ? error.message : (error as Error).message.toLowerCase();
      throw damaged(files.client, 'client store', why);
    }
  }

  const abort = async (error: ProfileError): Promise<never> => {
    await store?.close();
    throw error;
  };
  if (profile) {
    if (engineState !== 'present')
      await abort(
        damaged(files.engine, 'key store', 'it is missing or empty, so the identity key is lost'),
      );
    if (!signer) await abort(damaged(files.authKey, 'device key', 'it is missing or empty'));
  } else if (!options.create) {
    await abort(
      new ProfileError(
        `the profile ${dir} has no account yet: run "privcomm register" (or "privcomm link") first`,
      ),
    );
  }

  let engine: SignalEngine;
  try {
    engine = await openNodeEngine(files.engine);
  } catch (error) {
    return abort(damaged(files.engine, 'key store', (error as Error).message.toLowerCase()));
  }
  if (profile && !(await engine.localIdentity())) {
    await engine.close();
    await abort(damaged(files.engine, 'key store', 'it holds no identity key'));
  }

  // Sound so far: now the missing pieces of a new profile may be created.
  try {
    store ??= await openClientStore(files.client, { create: true });
    signer ??= FileSigner.create(files.authKey);
  } catch (error) {
    await engine.close();
    await store?.close();
    throw new ProfileError(`cannot write the profile ${dir}: ${(error as Error).message}`);
  }

  const now = options.now ?? Date.now;
  const server = options.serverOverride ?? profile?.relayUrl ?? DEFAULT_SERVER;
  const relay = options.relay ?? { loginRefused: false, connectionRefused: false };
  const client = await PrivcommClient.open({
    transport: nodeTransport(server, relay),
    // Nobody listening at the relay's address: waiting between retries gains nothing within
    // one command (the message stays in the outbox for the next send, receive or listen).
    // Any answer from the relay (a 429 too) brings the waits back, and so does staying
    // connected (the core's reconnection backs off through these waits).
    sleep: (ms) =>
      relay.connectionRefused && relay.stayingConnected !== true
        ? Promise.resolve()
        : new Promise((resolve) => setTimeout(resolve, ms)),
    engine,
    store,
    signer,
    randomBytes: (length) => new Uint8Array(randomBytes(length)),
    now,
    ...(options.calls === undefined ? {} : { calls: options.calls }),
    ...(options.syncCopyDelay === undefined ? {} : { syncCopyDelay: options.syncCopyDelay }),
  });
  // Disappeared messages leave at once, with their copies still waiting to go out.
  await client.purgeExpired();
  const openedStore = store;
  const openedSigner = signer;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await client.close();
    await openedStore.close();
  };
  return {
    dir,
    client,
    store: openedStore,
    engine,
    signer: openedSigner,
    server,
    profile,
    close,
    discardNew: async () => {
      await close();
      if (createdDir !== undefined) {
        rmSync(createdDir, { recursive: true, force: true });
        return;
      }
      for (const name of readdirSync(dir)) {
        const wasEmpty = before.get(name);
        if (wasEmpty === undefined) rmSync(path.join(dir, name), { recursive: true, force: true });
        else if (wasEmpty) truncateSync(path.join(dir, name), 0);
      }
    },
  };
};
