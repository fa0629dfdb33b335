import type { Command } from 'commander';
import {
  ClientError,
  type AccountId,
  type CallOptions,
  type ClientEvent,
  type PrivcommClient,
  type SyncCopyDelay,
} from '@privcomm/client';
import { normalizeServer } from './commands/common.ts';
import { describeError, UsageError, type Described } from './errors.ts';
import type { RelayWatch } from './node-transport.ts';
import { eventOutput, Names, Output } from './output.ts';
import { DEFAULT_SERVER, defaultProfileDir } from './profile-paths.ts';
import type { OpenedProfile } from './profile.ts';

/** What the program runs against: injected so that tests could drive it in-process. */
export interface Io {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Registers a handler for SIGINT and SIGTERM; returns its removal. */
  onSignal(handler: () => void): () => void;
}

/**
 * PRIVCOMM_SYNC_DELAY: how long a copy to this account's other devices waits before it is sent,
 * "MIN-MAX" in whole seconds (each copy waits a random time in between) or one number; unset:
 * the core's default, 10-180.
 */
export const parseSyncDelay = (value: string | undefined): SyncCopyDelay | undefined => {
  if (value === undefined || value.trim() === '') return undefined;
  const match = /^\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?$/.exec(value);
  const [min, max] = [Number(match?.[1]), Number(match?.[2] ?? match?.[1])];
  if (!match || max < min || max > 3600)
    throw new UsageError(
      `PRIVCOMM_SYNC_DELAY must be seconds as MIN-MAX (such as 10-180) or one number, at most 3600; it is "${value}"`,
    );
  return { minMs: min * 1000, maxMs: max * 1000 };
};

interface GlobalOptions {
  server?: string;
  profile?: string;
  json?: boolean;
}

/**
 * The state of one run of the program, handed to every command explicitly: the output (plain
 * or --json, known once the options are parsed), the profiles opened (closed at the end), the
 * relay named in errors, and whether the relay refused this device's login. Nothing of this
 * lives in module variables, so two runs in one process (the tests) never see each other's.
 */
export class RunContext {
  /** Replaced once the global options are known (--json). */
  out: Output;
  /** The relay that error messages name. */
  serverForErrors = DEFAULT_SERVER;
  readonly relay: RelayWatch = { loginRefused: false, connectionRefused: false };
  private readonly opened: OpenedProfile[] = [];

  constructor(readonly io: Io) {
    this.out = new Output(false, io);
  }

  /** Reads the global options (--server, --profile, --json) of the command being run. */
  globals(command: Command) {
    const options = command.optsWithGlobals<GlobalOptions>();
    this.out = new Output(options.json === true, this.io);
    const serverValue = options.server ?? this.io.env.PRIVCOMM_SERVER;
    const serverOverride =
      serverValue !== undefined && serverValue.trim() !== ''
        ? normalizeServer(serverValue.trim())
        : undefined;
    if (serverOverride) this.serverForErrors = serverOverride;
    return {
      json: options.json === true,
      profileDir: options.profile ?? defaultProfileDir(this.io.env),
      serverOverride,
    };
  }

  /** Opens the profile named by the options; `create` for register and link only. */
  async open(command: Command, create: boolean, calls?: CallOptions): Promise<OpenedProfile> {
    const g = this.globals(command);
    // Loaded here, not at start: it brings SQLite and libsignal, which help and usage errors
    // do not need (start-up time: see bin/privcomm.js).
    const { openProfile } = await import('./profile.ts');
    const syncCopyDelay = parseSyncDelay(this.io.env.PRIVCOMM_SYNC_DELAY);
    const profile = await openProfile({
      dir: g.profileDir,
      create,
      ...(syncCopyDelay === undefined ? {} : { syncCopyDelay }),
      relay: this.relay,
      ...(g.serverOverride === undefined ? {} : { serverOverride: g.serverOverride }),
      ...(calls === undefined ? {} : { calls }),
    });
    this.opened.push(profile);
    this.serverForErrors = profile.server;
    return profile;
  }

  /** An opened profile that has an account (every command but register and link). */
  async openAccount(command: Command, calls?: CallOptions) {
    const profile = await this.open(command, false, calls);
    const self = profile.client.profile;
    if (!self) throw new ClientError('NOT_REGISTERED', 'no account');
    return { ...profile, self };
  }

  /**
   * Opens a profile for register or link and runs `join` on it. If it fails before the profile
   * holds an account, everything the opening created is removed: a failed attempt leaves the
   * profile directory as it was (no key files of an account that does not exist).
   */
  async joinAccount<T>(command: Command, join: (opened: OpenedProfile) => Promise<T>): Promise<T> {
    const opened = await this.open(command, true);
    try {
      return await join(opened);
    } catch (error) {
      if (opened.client.profile === undefined) await opened.discardNew();
      throw error;
    }
  }

  async names(client: PrivcommClient, self: string): Promise<Names> {
    return new Names(self, await client.contacts(), await client.groups());
  }

  /** Warns (once per command) when a contact's identity key changed and was not looked at. */
  async warnIdentity(client: PrivcommClient, accountId: AccountId, label: string): Promise<void> {
    const identity = await client.identity(accountId);
    if (identity?.changed) {
      this.out.warn(
        `the safety number with ${label} changed (new key${identity.verified ? ', not trusted until you accept it' : ''}); compare it with "privcomm safety-number ${label}"`,
      );
    }
  }

  /** Prints one core event (contact names looked up at the time). */
  async printEvent(client: PrivcommClient, self: string, event: ClientEvent): Promise<void> {
    const shown = eventOutput(event, await this.names(client, self));
    if (shown) this.out.result(shown.json, shown.text);
  }

  /** Any error in one line, with its stable code and exit code. */
  describe(error: unknown): Described {
    return describeError(error, this.serverForErrors, this.relay.loginRefused);
  }

  /** Closes every profile this run opened. */
  async close(): Promise<void> {
    for (const profile of this.opened.splice(0)) await profile.close().catch(() => undefined);
  }
}
