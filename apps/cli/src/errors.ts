import {
  CallError,
  ClientError,
  EngineError,
  GroupError,
  StoreFormatError,
  UntrustedIdentityError,
  type CallSummary,
} from '@privcomm/client';
import { ERRORS, type ErrorCode } from '@privcomm/wire';
import { ProfileError } from './profile-paths.ts';

/** In the message of a TLS handshake that failed (e.g. https:// to a plain-HTTP server). */
export const TLS_FAILED = 'TLS_FAILED';

/** Exit codes: part of the interface (apps/cli/README.md). */
export const EXIT = {
  OK: 0,
  /** The command failed: relay, profile, contact, network... (the line on stderr says which). */
  FAILED: 1,
  /** The command line is wrong: unknown command or option, missing or invalid argument. */
  USAGE: 2,
} as const;

/** A command line that cannot be run as given (exit code 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failure already described for people, with the code for --json consumers. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly code = 'FAILED',
  ) {
    super(message);
  }
}

/** Client errors about an argument the user gave (exit code 2). */
const ARGUMENT_CODES: readonly string[] = ['INVALID_PHONE_NUMBER', 'INVALID_COUNTRY'];

export interface Described {
  readonly message: string;
  /** Stable code: a ClientError or EngineError code, PROFILE, USAGE or INTERNAL. */
  readonly code: string;
  readonly exitCode: number;
}

const RELAY_HINTS: Partial<Record<ErrorCode, string>> = {
  INVITE_REQUIRED:
    'this relay registers by invitation only: ask its operator for a code, then run "privcomm register --invite CODE"',
  INVITE_INVALID:
    'the invite code is unknown, used up or expired: ask the relay operator for a new one',
  UNAUTHENTICATED:
    'the relay no longer accepts this device (it was removed, or the account was deleted); link it again or register a new profile',
  SIGNATURE_INVALID:
    'the relay does not accept this device key (was the device removed?); link it again or register a new profile',
  CHALLENGE_INVALID: 'the login challenge expired; try again',
  FORBIDDEN: 'this device may not do that; use the primary device (device 1)',
  LINK_TOKEN_INVALID: 'the link expired or was already used; start "privcomm link" again',
  DEVICE_NOT_FOUND: 'no such device on this account; see "privcomm devices list"',
  DEVICE_LIMIT_REACHED:
    'the account already has 6 devices; remove one with "privcomm devices remove ID" first',
  ACCOUNT_NOT_FOUND: 'no such account on this relay',
  RATE_LIMITED: 'the relay is rate-limiting this device; wait a little and try again',
  QUEUE_FULL:
    'the recipient’s queue on the relay is full until their device comes online; the message was kept and goes out with your next "send" or "receive"',
  UNAVAILABLE: 'the relay cannot reach its database; try again later',
  INTERNAL: 'the relay failed unexpectedly; try again later',
  NOT_FOUND: 'the relay does not know this request; is the relay up to date?',
  DISCOVERY_NOT_CONFIGURED:
    'this relay does not offer finding people by phone number; add contacts by account id ("privcomm contacts add NAME ACCOUNT_ID")',
  DISCOVERY_KEY_ROTATED: 'the relay rotated its discovery key meanwhile; run the command again',
};

const describeClientError = (error: ClientError, server: string, loginRefused: boolean): string => {
  switch (error.code) {
    case 'RELAY_UNREACHABLE':
      if (error.message.includes(`(${TLS_FAILED})`))
        return `${error.message}. If the relay serves plain HTTP, use --server ${server.replace(/^https:/, 'http:')}`;
      return `${error.message}. Is the relay running? (server: ${server}; change it with --server URL)`;
    case 'NOT_A_RELAY':
      return `${error.message}. Check that ${server} is a privcomm relay of this version (change it with --server URL)`;
    case 'RELAY_REFUSED': {
      if (loginRefused)
        return `the relay no longer accepts this device (${error.relayCode ?? 'refused'}): it was removed from its account, or the account was deleted. Link it again ("privcomm link") or register a new profile`;
      const code = error.relayCode as ErrorCode | undefined;
      const hint =
        code && (RELAY_HINTS[code] ?? (code in ERRORS ? ERRORS[code].message : undefined));
      return hint ? `the relay refused (${code}): ${hint}` : error.message;
    }
    case 'INVALID_PHONE_NUMBER':
      return `invalid phone number: ${error.message}`;
    case 'INVALID_COUNTRY':
    case 'INVALID_ADDRESS_BOOK':
      return error.message;
    case 'NOT_REGISTERED':
      return 'this profile has no account yet: run "privcomm register" (or "privcomm link") first';
    case 'ALREADY_REGISTERED':
      return 'this profile already has an account (see "privcomm whoami"); use another --profile DIR for a new one';
    case 'UNKNOWN_ACCOUNT':
      return `${error.message}; check the account id`;
    case 'UNTRUSTED_IDENTITY':
      return `${error.message}; compare the safety number again, then run "privcomm accept-identity CONTACT"`;
    case 'INVALID_LINK_CODE':
      return `${error.message} (run "privcomm link" on the new device to get one)`;
    case 'LINK_TIMEOUT':
      return `${error.message}; run "privcomm link" again and enter the code on the primary device with "privcomm devices add CODE"`;
    case 'NOT_PRIMARY':
      return `${error.message} (device 1); run this command there`;
    case 'SEND_FAILED':
      return `the message was not sent: ${error.message}`;
    default:
      return error.message;
  }
};

const describeGroupError = (error: GroupError): string => {
  switch (error.code) {
    case 'NOT_ALLOWED':
      return `${error.message}: ask an admin of the group (see "privcomm group info GROUP")`;
    case 'GROUP_TOO_LARGE':
      return error.message;
    case 'NO_CHANGE':
      return `nothing to do: ${error.message}`;
    default:
      return error.message;
  }
};

const describeEngineError = (error: EngineError): string => {
  if (error instanceof UntrustedIdentityError) {
    return `the safety number with ${error.accountId} changed since you verified it: someone may be intercepting. Compare it again ("privcomm safety-number ${error.accountId}"), then run "privcomm accept-identity ${error.accountId}" to trust the new key`;
  }
  switch (error.code) {
    case 'NO_IDENTITY':
      return 'the profile holds no identity key; register or link it first';
    case 'IDENTITY_EXISTS':
      return 'this profile already has an identity key; use another --profile DIR';
    case 'INVALID_PROVISIONING':
      return 'the link message could not be opened (wrong link code?); run "privcomm link" again';
    case 'NO_SESSION':
      return `no session with that device: ${error.message}; try again`;
    default:
      return `${error.code}: ${error.message}`;
  }
};

const describeCallError = (error: CallError): string => {
  switch (error.code) {
    case 'INVALID_PEER':
      return 'you cannot call your own account; give a contact name or another account id';
    case 'CALL_STATE':
      return `${error.message}: this device already has a call (ringing or in progress); wait for it to end, then try again`;
    default:
      return error.message;
  }
};

/**
 * Why a call that never connected ended, in one line (the exit-1 line of "call" and "answer").
 * `peer` is the contact's name or account id; `localHangup` says this side hung up.
 */
export const describeCallEnd = (
  summary: Pick<CallSummary, 'reason' | 'detail' | 'direction'>,
  peer: string,
  localHangup: boolean,
): string => {
  switch (summary.reason) {
    case 'declined':
      return summary.direction === 'outgoing'
        ? `${peer} declined the call`
        : `the call from ${peer} was declined on another device of this account`;
    case 'busy':
      return summary.direction === 'outgoing'
        ? `${peer} is busy (in another call); try again later`
        : `the call from ${peer} was answered busy`;
    case 'no-answer':
      return summary.direction === 'outgoing'
        ? `no answer from ${peer} (the call rang until its time limit)`
        : `${peer} gave up before the call was answered (no answer)`;
    case 'hung-up':
      return localHangup
        ? `you hung up before the call with ${peer} connected`
        : `${peer} hung up before the call connected`;
    case 'answered-elsewhere':
      return `the call from ${peer} was answered on another device of this account`;
    case 'failed': {
      const why = summary.detail ?? 'no connection could be set up';
      // The same relay serves both sides: its missing TURN server is the caller's business too.
      const hint = why.includes('TURN_NOT_CONFIGURED')
        ? '; the relay offers no TURN server, which a call with an unverified contact needs: verify each other ("privcomm verify") for a direct call, or ask the relay operator for TURN'
        : '';
      return `the call with ${peer} failed: ${why}${hint}`;
    }
    default:
      return `the call with ${peer} ended (${String(summary.reason)})`;
  }
};

/**
 * One line (without the "privcomm: " prefix), a code and an exit code for any error.
 * `loginRefused`: the relay refused this device's login during the run (see RelayWatch).
 */
export const describeError = (error: unknown, server: string, loginRefused = false): Described => {
  if (error instanceof UsageError)
    return { message: error.message, code: 'USAGE', exitCode: EXIT.USAGE };
  if (error instanceof ProfileError)
    return { message: error.message, code: 'PROFILE', exitCode: EXIT.FAILED };
  // Met after opening (an id damaged in the file): the profile is refused, unchanged.
  if (error instanceof StoreFormatError)
    return {
      message: `the profile's client store is damaged: ${error.message}. Nothing was changed; restore it from a backup`,
      code: 'PROFILE',
      exitCode: EXIT.FAILED,
    };
  if (error instanceof CliError)
    return { message: error.message, code: error.code, exitCode: EXIT.FAILED };
  if (error instanceof ClientError)
    return {
      message: describeClientError(error, server, loginRefused),
      code: error.code,
      // A number or country given on the command line is an argument to fix: a usage error.
      exitCode: ARGUMENT_CODES.includes(error.code) ? EXIT.USAGE : EXIT.FAILED,
    };
  if (error instanceof EngineError)
    return { message: describeEngineError(error), code: error.code, exitCode: EXIT.FAILED };
  if (error instanceof GroupError)
    return { message: describeGroupError(error), code: error.code, exitCode: EXIT.FAILED };
  if (error instanceof CallError)
    return { message: describeCallError(error), code: error.code, exitCode: EXIT.FAILED };
  // By name: engine-node (and libsignal with it) is loaded only by commands that open a profile.
  if (error instanceof Error && error.name === 'WavError')
    return {
      message: `${error.message}; --play takes a 16-bit PCM WAV file (8 to 48 kHz)`,
      code: 'BAD_AUDIO_FILE',
      exitCode: EXIT.FAILED,
    };
  const message = error instanceof Error ? error.message : String(error);
  return {
    // In practice: an answer that parses as JSON but is not what a privcomm relay sends.
    message: `unexpected error: ${message.split('\n')[0]}. Check that ${server} is a privcomm relay of this version (PRIVCOMM_DEBUG=1 shows details)`,
    code: 'INTERNAL',
    exitCode: EXIT.FAILED,
  };
};
