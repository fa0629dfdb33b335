/**
 * The call state machine of one device: at most one call at a time. Pure: `transition` maps a
 * state and an event to the next state and the effects the call manager carries out (signaling,
 * media). `CallStateMachine` adds the clock: it stamps events with the time and fires the
 * ringing and connecting timeouts.
 *
 * Glare (both sides call each other at once): the call with the lower call id wins on both
 * sides, so both pick the same call without talking to each other; the side whose call lost
 * becomes the callee of the winning call and answers it (its user wanted that conversation).
 */

import type { AccountId } from '@privcomm/wire';

export type CallDirection = 'outgoing' | 'incoming';

export type EndReason =
  'hung-up' | 'declined' | 'busy' | 'no-answer' | 'failed' | 'answered-elsewhere';

export const END_REASONS: readonly EndReason[] = [
  'hung-up',
  'declined',
  'busy',
  'no-answer',
  'failed',
  'answered-elsewhere',
];

export interface CallInfo {
  /** Random, chosen by the caller; compared as a string to settle glare. */
  readonly callId: string;
  /** The other account. */
  readonly peer: AccountId;
  readonly direction: CallDirection;
  /** When this device placed the call or it started ringing (ms since epoch). */
  readonly startedAt: number;
}

export type CallState =
  | { readonly status: 'idle' }
  /** An offer was sent; waiting for the answer. */
  | { readonly status: 'outgoing'; readonly call: CallInfo }
  /** An offer arrived; waiting for the local user. */
  | { readonly status: 'ringing'; readonly call: CallInfo }
  /** Answered; ICE and DTLS under way. */
  | { readonly status: 'connecting'; readonly call: CallInfo; readonly since: number }
  | { readonly status: 'connected'; readonly call: CallInfo; readonly connectedAt: number }
  | {
      readonly status: 'ended';
      readonly call: CallInfo;
      readonly reason: EndReason;
      readonly endedAt: number;
      readonly connectedAt?: number;
      /** Why, in words, when the reason alone does not say (failures). */
      readonly detail?: string;
    };

export type CallStatus = CallState['status'];
export type ActiveCallState = Exclude<CallState, { status: 'idle' }>;

export type CallEvent =
  /** The local user calls `peer`. */
  | { readonly type: 'place'; readonly callId: string; readonly peer: AccountId }
  /** An offer from `peer`. */
  | { readonly type: 'offer'; readonly callId: string; readonly peer: AccountId }
  /** The local user answers the ringing call. */
  | { readonly type: 'accept' }
  /** The local user declines the ringing call. */
  | { readonly type: 'decline' }
  /** The local user says busy to the ringing call. */
  | { readonly type: 'busy' }
  /** The local user ends the call (while ringing: declines it). */
  | { readonly type: 'hangup' }
  /** The peer answered our call. */
  | { readonly type: 'answer'; readonly callId: string }
  /** The peer ended the call; `reason` is theirs (declined, no answer, …). */
  | {
      readonly type: 'remote-hangup';
      readonly callId: string;
      readonly reason: EndReason;
      /** Why it failed on their side (their error code), if they said. */
      readonly code?: string;
    }
  /** The peer is in another call. */
  | { readonly type: 'remote-busy'; readonly callId: string }
  /** Another device of this account answered or declined the ringing call. */
  | {
      readonly type: 'elsewhere';
      readonly callId: string;
      readonly outcome: 'answered' | 'declined';
    }
  /** Media flows. */
  | { readonly type: 'connected' }
  /** Setup or media failed. */
  | { readonly type: 'failed'; readonly detail?: string; readonly code?: string }
  /** The clock: ringing or connecting took too long. */
  | { readonly type: 'timeout' }
  /** Forget the ended call. */
  | { readonly type: 'reset' };

export type CallEventType = CallEvent['type'];

/** The events each state accepts; any other event is refused and changes nothing. */
export const LEGAL_EVENTS = {
  idle: ['place', 'offer'],
  outgoing: ['offer', 'answer', 'hangup', 'remote-hangup', 'remote-busy', 'failed', 'timeout'],
  ringing: [
    'offer',
    'accept',
    'decline',
    'busy',
    'hangup',
    'remote-hangup',
    'elsewhere',
    'failed',
    'timeout',
  ],
  connecting: ['offer', 'hangup', 'remote-hangup', 'elsewhere', 'connected', 'failed', 'timeout'],
  connected: ['offer', 'hangup', 'remote-hangup', 'failed'],
  ended: ['place', 'offer', 'reset'],
} as const satisfies { readonly [S in CallStatus]: readonly CallEventType[] };

/** The events legal in status `S`, as a type: `EventIn<'ringing'>` has accept, not answer. */
export type EventIn<S extends CallStatus> = Extract<
  CallEvent,
  { type: (typeof LEGAL_EVENTS)[S][number] }
>;

export const isLegal = (status: CallStatus, type: CallEventType): boolean =>
  (LEGAL_EVENTS[status] as readonly CallEventType[]).includes(type);

/** What the call manager must do after a transition. */
export type CallEffect =
  /** Create the peer connection and send the offer for the current call. */
  | { readonly type: 'send-offer' }
  /** Create the peer connection, apply the stored offer and send the answer. */
  | { readonly type: 'send-answer' }
  /** Apply the peer's answer to the current call's peer connection. */
  | { readonly type: 'apply-answer' }
  /** Tell the peer (and, with `sync`, this account's other devices) the call is over. */
  | {
      readonly type: 'send-hangup';
      readonly callId: string;
      readonly peer: AccountId;
      readonly reason: EndReason;
      readonly sync: boolean;
      /** Why the call failed here, for the peer (a stable error code). */
      readonly code?: string;
    }
  /** Answer an offer that cannot ring here with "busy". */
  | { readonly type: 'send-busy'; readonly callId: string; readonly peer: AccountId }
  /** Close the peer connection and media of a call and report how it went. */
  | { readonly type: 'release'; readonly callId: string };

export interface CallTimeouts {
  /** How long an offer rings (both sides) before it ends with "no-answer". */
  readonly ringTimeoutMs: number;
  /** How long ICE and DTLS may take after the answer before the call fails. */
  readonly connectTimeoutMs: number;
}

export interface Transition {
  /** False when the event is not legal in the state: nothing changed, nothing to do. */
  readonly accepted: boolean;
  readonly state: CallState;
  readonly effects: readonly CallEffect[];
}

const refuse = (state: CallState): Transition => ({ accepted: false, state, effects: [] });
/** Legal, but about another call (a late or foreign signal): nothing to do. */
const ignore = (state: CallState): Transition => ({ accepted: true, state, effects: [] });
const to = (state: CallState, ...effects: CallEffect[]): Transition => ({
  accepted: true,
  state,
  effects,
});

/** The reason this side reports when the peer hung up with `theirs`. */
const remoteReason = (theirs: EndReason): EndReason =>
  theirs === 'answered-elsewhere' ? 'hung-up' : theirs;

const end = (
  state: Exclude<CallState, { status: 'idle' | 'ended' }>,
  reason: EndReason,
  now: number,
  detail?: string,
): CallState => ({
  status: 'ended',
  call: state.call,
  reason,
  endedAt: now,
  ...(state.status === 'connected' ? { connectedAt: state.connectedAt } : {}),
  ...(detail === undefined ? {} : { detail }),
});

const release = (state: ActiveCallState): CallEffect => ({
  type: 'release',
  callId: state.call.callId,
});

const hangupFor = (call: CallInfo, reason: EndReason, sync = false, code?: string): CallEffect => ({
  type: 'send-hangup',
  callId: call.callId,
  peer: call.peer,
  reason,
  sync,
  ...(code === undefined ? {} : { code }),
});

/** The pure transition function. `now` stamps what the state records. */
export const transition = (
  state: CallState,
  event: CallEvent,
  now: number,
  timeouts: CallTimeouts,
): Transition => {
  if (!isLegal(state.status, event.type)) return refuse(state);
  if (state.status === 'idle' || state.status === 'ended') {
    switch (event.type) {
      case 'place':
        return to(
          {
            status: 'outgoing',
            call: { callId: event.callId, peer: event.peer, direction: 'outgoing', startedAt: now },
          },
          { type: 'send-offer' },
        );
      case 'offer':
        // The ended call's own offer, delivered late, does not ring again.
        if (state.status === 'ended' && state.call.callId === event.callId) return ignore(state);
        return to({
          status: 'ringing',
          call: { callId: event.callId, peer: event.peer, direction: 'incoming', startedAt: now },
        });
      case 'reset':
        return to({ status: 'idle' });
      default:
        return refuse(state);
    }
  }

  const { call } = state;
  const ours = (callId: string) => callId === call.callId;
  switch (event.type) {
    case 'offer': {
      if (ours(event.callId)) return ignore(state); // a duplicate of the ringing offer
      if (state.status === 'outgoing' && event.peer === call.peer) {
        // Glare: the lower call id wins on both sides.
        if (call.callId < event.callId) return ignore(state);
        return to(
          {
            status: 'connecting',
            call: { callId: event.callId, peer: event.peer, direction: 'incoming', startedAt: now },
            since: now,
          },
          release(state),
          // The peer's other devices ring for our losing call: stop them.
          hangupFor(call, 'hung-up'),
          { type: 'send-answer' },
        );
      }
      return to(state, { type: 'send-busy', callId: event.callId, peer: event.peer });
    }
    case 'accept':
      if (state.status !== 'ringing') return refuse(state);
      return to({ status: 'connecting', call, since: now }, { type: 'send-answer' });
    case 'decline':
    case 'busy':
    case 'hangup': {
      if (state.status === 'ringing') {
        if (event.type === 'busy') {
          return to(end(state, 'busy', now), release(state), {
            type: 'send-busy',
            callId: call.callId,
            peer: call.peer,
          });
        }
        // Declined here: the caller and this account's other devices (still ringing) hear it.
        return to(end(state, 'declined', now), release(state), hangupFor(call, 'declined', true));
      }
      if (event.type !== 'hangup') return refuse(state);
      return to(end(state, 'hung-up', now), release(state), hangupFor(call, 'hung-up'));
    }
    case 'answer':
      if (state.status !== 'outgoing') return refuse(state);
      if (!ours(event.callId)) return ignore(state);
      return to({ status: 'connecting', call, since: now }, { type: 'apply-answer' });
    case 'remote-hangup':
      if (!ours(event.callId)) return ignore(state);
      return to(
        end(
          state,
          remoteReason(event.reason),
          now,
          event.code === undefined ? undefined : `their device could not take part (${event.code})`,
        ),
        release(state),
      );
    case 'remote-busy':
      if (state.status !== 'outgoing') return refuse(state);
      if (!ours(event.callId)) return ignore(state);
      // The peer's other devices may still ring: the hangup stops them.
      return to(end(state, 'busy', now), release(state), hangupFor(call, 'busy'));
    case 'elsewhere':
      if (!ours(event.callId) || call.direction !== 'incoming') return ignore(state);
      if (state.status !== 'ringing' && state.status !== 'connecting') return refuse(state);
      return to(
        end(state, event.outcome === 'answered' ? 'answered-elsewhere' : 'declined', now),
        release(state),
      );
    case 'connected':
      if (state.status !== 'connecting') return refuse(state);
      return to({ status: 'connected', call, connectedAt: now });
    case 'failed':
      return to(
        end(state, 'failed', now, event.detail),
        release(state),
        // A ringing call that failed here still rings at the caller's until its timeout:
        // only a call the peer knows we took part in is hung up.
        ...(state.status === 'ringing' ? [] : [hangupFor(call, 'failed', false, event.code)]),
      );
    case 'timeout': {
      if (state.status === 'outgoing' || state.status === 'ringing') {
        if (now < call.startedAt + timeouts.ringTimeoutMs) return ignore(state);
        return to(
          end(state, 'no-answer', now),
          release(state),
          // The caller stops the callee's devices; a callee just stops ringing.
          ...(state.status === 'outgoing' ? [hangupFor(call, 'no-answer')] : []),
        );
      }
      if (state.status === 'connecting') {
        if (now < state.since + timeouts.connectTimeoutMs) return ignore(state);
        return to(
          end(state, 'failed', now, 'no connection within the time limit'),
          release(state),
          hangupFor(call, 'failed'),
        );
      }
      return refuse(state);
    }
    default:
      return refuse(state);
  }
};

/** Time, injected so that tests (and platforms) control it. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock = (now: () => number = Date.now): Clock => ({
  now,
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
});

/** When the current state times out, if it can. */
const deadline = (state: CallState, timeouts: CallTimeouts): number | undefined => {
  switch (state.status) {
    case 'outgoing':
    case 'ringing':
      return state.call.startedAt + timeouts.ringTimeoutMs;
    case 'connecting':
      return state.since + timeouts.connectTimeoutMs;
    default:
      return undefined;
  }
};

/**
 * The state machine with its clock: `dispatch` applies an event at the clock's time; entering
 * outgoing, ringing or connecting arms the timeout, which dispatches `timeout` itself and hands
 * its transition to `onTransition`.
 */
export class CallStateMachine {
  private current: CallState = { status: 'idle' };
  private timer: unknown;

  constructor(
    private readonly clock: Clock,
    private readonly timeouts: CallTimeouts,
    private readonly onTransition: (transition: Transition, event: CallEvent) => void = () =>
      undefined,
  ) {}

  get state(): CallState {
    return this.current;
  }

  /** Applies `event`; refused events change nothing (`accepted` false). */
  dispatch(event: CallEvent): Transition {
    const result = transition(this.current, event, this.clock.now(), this.timeouts);
    if (result.accepted && result.state !== this.current) {
      this.current = result.state;
      this.arm();
    }
    return result;
  }

  private arm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const at = deadline(this.current, this.timeouts);
    if (at === undefined) return;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        const before = this.current;
        const result = this.dispatch({ type: 'timeout' });
        // A timer that fired early (a coarse clock) arms again for the rest.
        if (this.current === before) this.arm();
        else this.onTransition(result, { type: 'timeout' });
      },
      Math.max(0, at - this.clock.now()),
    );
  }

  /** Stops the timer (the owner is shutting down). */
  dispose(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
