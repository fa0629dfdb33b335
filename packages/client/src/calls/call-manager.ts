import type { AccountId, TurnCredentials } from '@privcomm/wire';
import type { CallSignal, IceCandidateSignal } from '../content.ts';
import type { Address, IdentityState } from '../engine.ts';
import {
  CallStateMachine,
  systemClock,
  type CallEvent,
  type CallInfo,
  type CallState,
  type Clock,
  type EndReason,
  type Transition,
} from './call-state.ts';
import {
  candidateType,
  selectedPath,
  stripAddresses,
  type CallMedia,
  type CallMediaFactory,
  type CandidatePath,
  type IceServer,
  type PeerConnectionLike,
  type WebRtc,
} from './webrtc.ts';

/**
 * Calls over an injected WebRTC stack, signaled through the client's send pipeline:
 * - offer, answer, hangup and busy are end-to-end encrypted urgent messages (stored until
 *   delivered); ICE candidates are online-only messages, which the relay never stores, and the
 *   SDP in stored messages carries no candidate and no address;
 * - TURN credentials come from the relay at each call setup, never from configuration here;
 * - relay-only ICE (TURN candidates only, so the peer never learns this device's address) is on
 *   for every contact whose safety number was not verified, and a setting for the others;
 * - the callee's other devices learn from the sync copy of the answer (or decline) that the call
 *   was taken elsewhere;
 * - an offer that arrives during another call is answered "busy".
 */

const DEFAULT_RING_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
/**
 * How long a connected call may stay ICE-"disconnected" (no answer to connectivity checks, so no
 * media) before it ends as lost. libwebrtc may never report "failed" for a connection that
 * worked: in the NAT tests, a side whose peer's address changed stayed "disconnected" for good,
 * silent, until its user hung up. A short outage (Wi-Fi roaming, a tunnel) comes back within
 * this time and the call goes on.
 */
const DEFAULT_LOST_TIMEOUT_MS = 10_000;
/** Candidates kept per peer device until the remote description is set. */
const MAX_PENDING_CANDIDATES = 64;
/** Candidates per ICE message (the content format accepts 32). */
const ICE_BATCH = 16;
/** Summaries kept for `whenEnded` callers that ask after the fact. */
const RECENT_SUMMARIES = 32;

export interface CallSettings {
  /** How long an offer rings, on both sides (default 60 s). */
  readonly ringTimeoutMs?: number;
  /** How long ICE and DTLS may take once answered (default 20 s). */
  readonly connectTimeoutMs?: number;
  /** How long a connected call may go without connectivity before it ends (default 10 s). */
  readonly lostTimeoutMs?: number;
  /** Relay-only for verified contacts too; it is always on for contacts not verified. */
  readonly alwaysRelay?: boolean;
}

/** What a platform gives the client for calls (ClientDeps.calls). */
export interface CallOptions extends CallSettings {
  /** Without it, calls ring and can be declined, but not placed or answered. */
  readonly webrtc?: WebRtc;
  /** The default audio of a call when `start` or `accept` gets none. */
  readonly media?: CallMediaFactory;
  readonly clock?: Clock;
}

export interface CallManagerDeps {
  /** Sends a signal through the send pipeline (online-only for ICE; `sync` also to own devices). */
  send(
    to: AccountId,
    callId: string,
    signal: CallSignal,
    options: { online: boolean; sync: boolean },
  ): Promise<void>;
  turnCredentials(): Promise<TurnCredentials>;
  identityState(accountId: AccountId): Promise<IdentityState | undefined>;
  self(): Address;
  randomBytes(length: number): Uint8Array;
  now(): number;
}

/** How a call went, reported once it ended. */
export interface CallSummary {
  readonly callId: string;
  readonly peer: AccountId;
  readonly direction: CallInfo['direction'];
  readonly reason: EndReason;
  readonly detail?: string;
  /** Media flowed at some point. */
  readonly connected: boolean;
  /** The selected candidate pair went through TURN (either side a relay candidate). */
  readonly relay: boolean;
  /** This side used relay-only ICE. */
  readonly relayOnly: boolean;
  /** Candidate types of the selected pair, when it connected. */
  readonly path?: CandidatePath;
  /**
   * Why it failed here, as a stable code: MICROPHONE_DENIED (the platform may not capture
   * audio: the person refused the permission), MEDIA_FAILED, or the relay's code.
   */
  readonly code?: string;
  /** From connected to ended; 0 when it never connected. */
  readonly durationMs: number;
  readonly startedAt: number;
  readonly endedAt: number;
}

export type CallManagerEvent =
  | { readonly type: 'call'; readonly state: CallState }
  | { readonly type: 'call-muted'; readonly muted: boolean }
  | { readonly type: 'call-ended'; readonly summary: CallSummary };

export type CallErrorCode =
  /** Already in a call (place), or no call in a state that allows the action. */
  | 'CALL_STATE'
  /** Calling oneself. */
  | 'INVALID_PEER'
  /**
   * Thrown by a platform's CallMediaFactory when the microphone permission is refused; the
   * call then fails with this code in its summary, so the interface can say what to do.
   */
  | 'MICROPHONE_DENIED';

export class CallError extends Error {
  override readonly name = 'CallError';
  constructor(
    readonly code: CallErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Why a setup step failed, in words for the summary; `code` is told to the peer. */
class SetupError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The stable code of a failure, told to the peer in the hangup: the relay's, or the setup's. */
const failureCode = (error: unknown): string | undefined => {
  const { relayCode, code } = error as { relayCode?: unknown; code?: unknown };
  if (typeof relayCode === 'string') return relayCode;
  return error instanceof SetupError && typeof code === 'string' ? code : undefined;
};

/**
 * Diagnostics of one call: every ICE candidate this device sent (as sent) and received (as
 * received). They carry network addresses: for a user looking into why a call took the path it
 * did, never for logs.
 */
export interface CallObserver {
  candidate(direction: 'sent' | 'received', candidate: string): void;
}

export interface StartOptions {
  /** Relay-only even for a verified contact. */
  readonly relayOnly?: boolean;
  /** This call's audio (else the default factory's). */
  readonly media?: CallMedia;
  readonly observer?: CallObserver;
}

export interface AcceptOptions {
  readonly media?: CallMedia;
  readonly observer?: CallObserver;
}

interface Session {
  readonly callId: string;
  readonly peer: AccountId;
  forceRelay: boolean;
  relayOnly: boolean;
  /** The peer's device in the call: the caller's, or the callee's that answered. */
  remoteDevice?: number;
  /** Incoming: the offer to answer. */
  offerSdp?: string;
  /** Outgoing: the answer to apply, with its device. */
  answer?: { sdp: string; deviceId: number };
  media?: CallMedia;
  observer?: CallObserver;
  pc?: PeerConnectionLike;
  remoteDescribed: boolean;
  /** The offer or answer is queued for sending: ICE may follow it. */
  described: boolean;
  offerQueued: boolean;
  readonly pendingRemote: Map<number, IceCandidateSignal[]>;
  readonly localCandidates: IceCandidateSignal[];
  sendingIce: boolean;
  path?: CandidatePath;
  /** ICE connected at least once. */
  wasConnected: boolean;
  /** The connection stopped answering, after it had worked: the timer that ends the call. */
  lostTimer?: unknown;
  capturing: boolean;
  released: boolean;
  /** Why setup failed here (the summary's code). */
  failureCode?: string;
  /** Signals of this call, sent one after the other. */
  sends: Promise<void>;
}

const hex = (bytes: Uint8Array): string =>
  [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');

const message = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);

export class CallManager {
  private readonly machine: CallStateMachine;
  private readonly clock: Clock;
  private readonly sessions = new Map<string, Session>();
  private readonly listeners = new Set<(event: CallManagerEvent) => void>();
  private readonly recent: CallSummary[] = [];
  private readonly waiting = new Map<string, ((summary: CallSummary) => void)[]>();
  private queue: Promise<void> = Promise.resolve();
  /** Signals not yet handed to the relay (close waits for them). */
  private readonly inflight = new Set<Promise<unknown>>();
  private lastEmitted: CallState | undefined;
  /** The current call's microphone is muted (reset for every new call). */
  private mutedValue = false;
  private readonly ringTimeoutMs: number;
  private alwaysRelay: boolean;

  constructor(
    private readonly deps: CallManagerDeps,
    private readonly options: CallOptions = {},
  ) {
    this.clock = options.clock ?? systemClock(deps.now);
    this.ringTimeoutMs = options.ringTimeoutMs ?? DEFAULT_RING_TIMEOUT_MS;
    this.alwaysRelay = options.alwaysRelay === true;
    this.machine = new CallStateMachine(
      this.clock,
      {
        ringTimeoutMs: this.ringTimeoutMs,
        connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      },
      (result) => void this.apply(result),
    );
  }

  /** The current (or last) call; interfaces render it. */
  get state(): CallState {
    return this.machine.state;
  }

  /** The setting: relay-only for verified contacts too (from the next call on). */
  setAlwaysRelay(on: boolean): void {
    this.alwaysRelay = on;
  }

  /** Whether the current call's microphone is muted. */
  get muted(): boolean {
    return this.mutedValue;
  }

  /**
   * Mutes or unmutes the current call's microphone: the track stays in the call (no
   * renegotiation) but sends silence while disabled. Emits 'call-muted'.
   */
  setMuted(muted: boolean): void {
    const state = this.machine.state;
    if (state.status === 'idle' || state.status === 'ended')
      throw new CallError('CALL_STATE', 'no call to mute');
    this.mutedValue = muted;
    const track = this.sessions.get(state.call.callId)?.media?.track;
    if (track) track.enabled = !muted;
    this.emit({ type: 'call-muted', muted });
  }

  subscribe(listener: (event: CallManagerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: CallManagerEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** The summary of a call once it ended (at once if it already did). */
  whenEnded(callId: string): Promise<CallSummary> {
    const done = this.recent.find((summary) => summary.callId === callId);
    if (done) return Promise.resolve(done);
    return new Promise((resolve) => {
      this.waiting.set(callId, [...(this.waiting.get(callId) ?? []), resolve]);
    });
  }

  // ---- local actions -----------------------------------------------------------------------

  /** Calls `peer`; resolves once the offer is on its way (or the setup failed: see the state). */
  async start(peer: AccountId, options: StartOptions = {}): Promise<CallInfo> {
    if (peer === this.deps.self().accountId)
      throw new CallError('INVALID_PEER', 'you cannot call your own account');
    const callId = hex(this.deps.randomBytes(16));
    const session = this.newSession(callId, peer, options.relayOnly === true);
    this.resetMuted();
    if (options.media) session.media = options.media;
    if (options.observer) session.observer = options.observer;
    this.sessions.set(callId, session);
    const result = this.machine.dispatch({ type: 'place', callId, peer });
    if (!result.accepted) {
      this.sessions.delete(callId);
      throw new CallError('CALL_STATE', 'already in a call');
    }
    const call = result.state.status === 'outgoing' ? result.state.call : undefined;
    await this.apply(result);
    return call ?? { callId, peer, direction: 'outgoing', startedAt: this.clock.now() };
  }

  /** Answers the ringing call; resolves once the answer is on its way (or setup failed). */
  async accept(options: AcceptOptions = {}): Promise<void> {
    const state = this.machine.state;
    const session = state.status === 'ringing' ? this.sessions.get(state.call.callId) : undefined;
    if (!session) throw new CallError('CALL_STATE', 'no call is ringing');
    if (options.media) session.media = options.media;
    if (options.observer) session.observer = options.observer;
    this.resetMuted();
    await this.act({ type: 'accept' }, 'no call is ringing');
  }

  /** Declines the ringing call: the caller and this account's other devices hear "declined". */
  decline(): Promise<void> {
    return this.act({ type: 'decline' }, 'no call is ringing');
  }

  /** Answers the ringing call with "busy". */
  busy(): Promise<void> {
    return this.act({ type: 'busy' }, 'no call is ringing');
  }

  /** Ends the call in any state (a ringing one is declined). */
  hangup(): Promise<void> {
    return this.act({ type: 'hangup' }, 'no call to hang up');
  }

  private async act(event: CallEvent, refusal: string): Promise<void> {
    const result = this.machine.dispatch(event);
    if (!result.accepted) throw new CallError('CALL_STATE', refusal);
    await this.apply(result);
  }

  // ---- signals from the receive pipeline ---------------------------------------------------

  /** A call signal from `sender`, in the order received. */
  receive(sender: Address, callId: string, signal: CallSignal, sentAt: number): void {
    this.queue = this.queue
      .then(() => this.process(sender, callId, signal, sentAt))
      .catch(() => undefined);
  }

  /** A signal that another device of this account sent to `to`. */
  receiveSync(to: AccountId, callId: string, signal: CallSignal): void {
    this.queue = this.queue
      .then(async () => {
        const state = this.machine.state;
        if (state.status === 'idle' || state.call.peer !== to) return;
        const outcome =
          signal.type === 'answer'
            ? 'answered'
            : signal.type === 'hangup' && signal.reason === 'declined'
              ? 'declined'
              : undefined;
        if (outcome === undefined) return;
        await this.apply(this.machine.dispatch({ type: 'elsewhere', callId, outcome }));
      })
      .catch(() => undefined);
  }

  private async process(
    sender: Address,
    callId: string,
    signal: CallSignal,
    sentAt: number,
  ): Promise<void> {
    if (sender.accountId === this.deps.self().accountId) return;
    const session = this.sessions.get(callId);
    // Signals about a call are accepted from its peer, and once a device of the peer took part,
    // from that device only.
    const fromPeer =
      session !== undefined &&
      session.peer === sender.accountId &&
      (session.remoteDevice === undefined || session.remoteDevice === sender.deviceId);
    switch (signal.type) {
      case 'offer': {
        // A duplicate, or a call that already ended here.
        if (session || this.recent.some((summary) => summary.callId === callId)) return;
        const now = this.clock.now();
        if (now - sentAt > this.ringTimeoutMs) {
          // Delivered from the queue after the caller gave up: a missed call, it does not ring.
          this.finished({
            callId,
            peer: sender.accountId,
            direction: 'incoming',
            reason: 'no-answer',
            connected: false,
            relay: false,
            relayOnly: false,
            durationMs: 0,
            startedAt: sentAt,
            endedAt: now,
          });
          return;
        }
        const incoming = this.newSession(callId, sender.accountId, false);
        incoming.remoteDevice = sender.deviceId;
        incoming.offerSdp = signal.sdp;
        this.sessions.set(callId, incoming);
        const before = this.machine.state;
        const result = this.machine.dispatch({ type: 'offer', callId, peer: sender.accountId });
        const state = this.machine.state;
        if (state.status === 'idle' || state.call.callId !== callId) {
          this.sessions.delete(callId);
        } else if (before.status === 'outgoing') {
          // Glare, and our call lost: the winning call takes over its audio and ICE policy.
          const lost = this.sessions.get(before.call.callId);
          if (lost) {
            incoming.forceRelay = lost.forceRelay;
            if (lost.media) incoming.media = lost.media;
            delete lost.media;
            if (lost.observer) incoming.observer = lost.observer;
          }
        }
        await this.apply(result);
        return;
      }
      case 'answer':
        if (!session || session.peer !== sender.accountId) return;
        session.answer = { sdp: signal.sdp, deviceId: sender.deviceId };
        await this.apply(this.machine.dispatch({ type: 'answer', callId }));
        return;
      case 'ice': {
        if (!session || !fromPeer) return;
        for (const { candidate } of signal.candidates)
          session.observer?.candidate('received', candidate);
        if (!session.remoteDescribed || !session.pc) {
          const pending = session.pendingRemote.get(sender.deviceId) ?? [];
          pending.push(...signal.candidates);
          session.pendingRemote.set(sender.deviceId, pending.slice(-MAX_PENDING_CANDIDATES));
          return;
        }
        await this.addCandidates(session, signal.candidates);
        return;
      }
      case 'hangup':
        if (!session || !fromPeer) return;
        await this.apply(
          this.machine.dispatch({
            type: 'remote-hangup',
            callId,
            reason: signal.reason,
            ...(signal.code === undefined ? {} : { code: signal.code }),
          }),
        );
        return;
      case 'busy':
        if (!session || !fromPeer) return;
        await this.apply(this.machine.dispatch({ type: 'remote-busy', callId }));
        return;
    }
  }

  // ---- effects -----------------------------------------------------------------------------

  private newSession(callId: string, peer: AccountId, forceRelay: boolean): Session {
    return {
      callId,
      peer,
      forceRelay,
      relayOnly: true,
      remoteDescribed: false,
      described: false,
      offerQueued: false,
      pendingRemote: new Map(),
      localCandidates: [],
      sendingIce: false,
      wasConnected: false,
      capturing: false,
      released: false,
      sends: Promise.resolve(),
    };
  }

  /** The current call's session, if `callId` is still the current call. */
  private current(callId: string): Session | undefined {
    const state = this.machine.state;
    if (state.status === 'idle' || state.status === 'ended' || state.call.callId !== callId)
      return undefined;
    const session = this.sessions.get(callId);
    return session && !session.released ? session : undefined;
  }

  /**
   * Carries out a transition: reports the new state, sends its signals (in order, behind the
   * call's earlier ones), starts its setups, and then releases ended calls.
   */
  private async apply(result: Transition): Promise<void> {
    if (!result.accepted) return;
    if (result.state === this.machine.state && result.state !== this.lastEmitted) {
      this.lastEmitted = result.state;
      this.emit({ type: 'call', state: result.state });
    }
    const setups: Promise<void>[] = [];
    for (const effect of result.effects) {
      switch (effect.type) {
        case 'send-offer':
        case 'send-answer':
        case 'apply-answer': {
          const state = result.state;
          if (state.status === 'idle' || state.status === 'ended') break;
          const session = this.sessions.get(state.call.callId);
          if (!session) break;
          setups.push(
            effect.type === 'send-offer'
              ? this.setupOutgoing(session)
              : effect.type === 'send-answer'
                ? this.setupAnswer(session)
                : this.applyAnswer(session),
          );
          break;
        }
        case 'send-hangup': {
          const session = this.sessions.get(effect.callId);
          // An offer that never left needs no hangup.
          if (session && session.remoteDevice === undefined && !session.offerQueued) break;
          const reason = effect.reason === 'answered-elsewhere' ? 'hung-up' : effect.reason;
          void this.signal(
            session,
            effect.peer,
            effect.callId,
            { type: 'hangup', reason, ...(effect.code === undefined ? {} : { code: effect.code }) },
            { online: false, sync: effect.sync },
          ).catch(() => undefined);
          break;
        }
        case 'send-busy': {
          const session = this.sessions.get(effect.callId);
          void this.signal(
            session,
            effect.peer,
            effect.callId,
            { type: 'busy' },
            { online: false, sync: false },
          ).catch(() => undefined);
          if (!session) {
            // An offer that could not ring here: the user sees a missed call.
            const now = this.clock.now();
            this.finished({
              callId: effect.callId,
              peer: effect.peer,
              direction: 'incoming',
              reason: 'busy',
              connected: false,
              relay: false,
              relayOnly: false,
              durationMs: 0,
              startedAt: now,
              endedAt: now,
            });
          }
          break;
        }
        case 'release':
          break;
      }
    }
    for (const effect of result.effects) {
      if (effect.type === 'release') await this.release(effect.callId, result.state);
    }
    await Promise.all(setups);
  }

  /** Sends one signal of a call after the ones before it. */
  private signal(
    session: Session | undefined,
    peer: AccountId,
    callId: string,
    signal: CallSignal,
    options: { online: boolean; sync: boolean },
  ): Promise<void> {
    const send = () => this.deps.send(peer, callId, signal, options);
    const sent = session ? session.sends.then(send) : send();
    if (session) session.sends = sent.catch(() => undefined);
    const tracked = sent.catch(() => undefined);
    this.inflight.add(tracked);
    void tracked.then(() => this.inflight.delete(tracked));
    return sent;
  }

  private resetMuted(): void {
    if (!this.mutedValue) return;
    this.mutedValue = false;
    this.emit({ type: 'call-muted', muted: false });
  }

  private async fail(session: Session, error: unknown): Promise<void> {
    if (!this.current(session.callId)) return;
    const code = failureCode(error);
    if (code !== undefined) session.failureCode = code;
    await this.apply(
      this.machine.dispatch({
        type: 'failed',
        detail: message(error),
        ...(code === undefined ? {} : { code }),
      }),
    );
  }

  /** TURN credentials, ICE policy, media and the peer connection for a call. */
  private async open(session: Session): Promise<PeerConnectionLike | undefined> {
    const webrtc = this.options.webrtc;
    if (!webrtc) throw new SetupError('this device cannot make calls: no WebRTC');
    const identity = await this.deps.identityState(session.peer);
    session.relayOnly = session.forceRelay || identity?.verified !== true || this.alwaysRelay;
    let iceServers: IceServer[] = [];
    try {
      const turn = await this.deps.turnCredentials();
      iceServers = [{ urls: turn.urls, username: turn.username, credential: turn.password }];
    } catch (error) {
      // Without TURN a direct call may still work; a relay-only call cannot.
      if (session.relayOnly)
        throw new SetupError(
          `relay-only call, but no TURN credentials: ${message(error)}`,
          failureCode(error),
        );
    }
    if (session.released) return undefined;
    if (!session.media) {
      if (!this.options.media) throw new SetupError('no audio source for the call');
      let media: CallMedia;
      try {
        media = await this.options.media();
      } catch (error) {
        throw new SetupError(
          message(error),
          error instanceof CallError ? error.code : 'MEDIA_FAILED',
        );
      }
      if (session.released) {
        media.stop();
        return undefined;
      }
      session.media = media;
    }
    const media = session.media;
    if (this.mutedValue) media.track.enabled = false;
    const pc = new webrtc.RTCPeerConnection({
      iceServers,
      iceTransportPolicy: session.relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    });
    session.pc = pc;
    pc.addEventListener('icecandidate', (event) => {
      const candidate = event.candidate;
      if (!candidate?.candidate || session.released) return;
      // Relay-only: whatever the stack gathers, only relay candidates leave this device.
      if (session.relayOnly && candidateType(candidate.candidate) !== 'relay') return;
      session.localCandidates.push({
        candidate: candidate.candidate,
        ...(typeof candidate.sdpMid === 'string' ? { sdpMid: candidate.sdpMid } : {}),
        ...(typeof candidate.sdpMLineIndex === 'number'
          ? { sdpMLineIndex: candidate.sdpMLineIndex }
          : {}),
      });
      void this.flushIce(session);
    });
    pc.addEventListener('track', (event) => {
      if (!session.released) media.onRemoteTrack(event.track);
    });
    const onState = () => {
      if (session.released) return;
      const ice = pc.iceConnectionState;
      const state =
        pc.connectionState ??
        (ice === 'completed' ? 'connected' : ice === 'checking' ? 'connecting' : ice);
      if (state === 'connected') {
        this.stopLostTimer(session);
        void this.connected(session);
      } else if (state === 'failed') {
        void this.fail(session, new Error(this.lostText(session)));
      } else if (state === 'disconnected') {
        this.startLostTimer(session);
      }
    };
    pc.addEventListener('connectionstatechange', onState);
    pc.addEventListener('iceconnectionstatechange', onState);
    pc.addTrack(media.track);
    return pc;
  }

  private async setupOutgoing(session: Session): Promise<void> {
    try {
      const pc = await this.open(session);
      if (!pc || session.released) return;
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (session.released) return;
      session.offerQueued = true;
      await this.signal(
        session,
        session.peer,
        session.callId,
        { type: 'offer', sdp: stripAddresses(offer.sdp ?? '') },
        { online: false, sync: false },
      );
    } catch (error) {
      await this.fail(session, error);
    }
  }

  private async setupAnswer(session: Session): Promise<void> {
    try {
      const pc = await this.open(session);
      if (!pc || session.released) return;
      await pc.setRemoteDescription({ type: 'offer', sdp: session.offerSdp ?? '' });
      await this.remoteDescribed(session);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (session.released) return;
      const sent = this.signal(
        session,
        session.peer,
        session.callId,
        { type: 'answer', sdp: stripAddresses(answer.sdp ?? '') },
        // The copy tells this account's other devices to stop ringing.
        { online: false, sync: true },
      );
      session.described = true;
      void this.flushIce(session);
      await sent;
    } catch (error) {
      await this.fail(session, error);
    }
  }

  private async applyAnswer(session: Session): Promise<void> {
    const answer = session.answer;
    if (!answer) return;
    session.remoteDevice = answer.deviceId;
    try {
      const pc = session.pc;
      if (!pc) throw new SetupError('the answer came before the call was set up');
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      await this.remoteDescribed(session);
      // The callee is online now: the candidates gathered meanwhile can go.
      session.described = true;
      await this.flushIce(session);
    } catch (error) {
      await this.fail(session, error);
    }
  }

  /** Applies the candidates that came before the remote description, from the right device. */
  private async remoteDescribed(session: Session): Promise<void> {
    session.remoteDescribed = true;
    const pending =
      session.remoteDevice === undefined
        ? []
        : (session.pendingRemote.get(session.remoteDevice) ?? []);
    session.pendingRemote.clear();
    await this.addCandidates(session, pending);
  }

  private async addCandidates(session: Session, candidates: IceCandidateSignal[]): Promise<void> {
    for (const candidate of candidates) {
      if (session.released || !session.pc) return;
      await session.pc
        .addIceCandidate({
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid ?? null,
          sdpMLineIndex: candidate.sdpMLineIndex ?? null,
        })
        .catch(() => undefined); // a candidate the stack cannot use is skipped
    }
  }

  /** Sends the gathered candidates, online-only, once the peer can use them. */
  private async flushIce(session: Session): Promise<void> {
    if (session.sendingIce || !session.described || session.remoteDevice === undefined) return;
    session.sendingIce = true;
    try {
      while (session.localCandidates.length > 0 && !session.released) {
        const batch = session.localCandidates.splice(0, ICE_BATCH);
        for (const { candidate } of batch) session.observer?.candidate('sent', candidate);
        await this.signal(
          session,
          session.peer,
          session.callId,
          { type: 'ice', candidates: batch },
          { online: true, sync: false },
        ).catch(() => undefined);
      }
    } finally {
      session.sendingIce = false;
    }
  }

  /** Why a connection that failed did: it never worked, or it was lost (after working). */
  private lostText(session: Session): string {
    return session.wasConnected
      ? 'the connection was lost (no answer from the other side: did a network change?)'
      : 'the connection failed';
  }

  private startLostTimer(session: Session): void {
    // Only a call that had connected: during setup the connect timeout applies.
    if (!session.wasConnected || session.lostTimer !== undefined) return;
    const ms = this.options.lostTimeoutMs ?? DEFAULT_LOST_TIMEOUT_MS;
    session.lostTimer = this.clock.setTimeout(() => {
      session.lostTimer = undefined;
      void this.fail(session, new Error(`${this.lostText(session)}; no media for ${ms / 1000} s`));
    }, ms);
  }

  private stopLostTimer(session: Session): void {
    if (session.lostTimer === undefined) return;
    this.clock.clearTimeout(session.lostTimer);
    session.lostTimer = undefined;
  }

  private async connected(session: Session): Promise<void> {
    if (!this.current(session.callId)) return;
    session.wasConnected = true;
    await this.apply(this.machine.dispatch({ type: 'connected' }));
    if (session.capturing) return;
    session.capturing = true;
    // The selected pair shows in the stats shortly after.
    for (let attempt = 0; attempt < 10 && !session.path && !session.released; attempt += 1) {
      await this.capturePath(session);
      if (!session.path) await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 100));
    }
  }

  private async capturePath(session: Session): Promise<void> {
    const pc = session.pc;
    if (!pc) return;
    try {
      const path = selectedPath(await pc.getStats());
      if (path) session.path = path;
    } catch {
      // No stats: the path read earlier, if any, stands.
    }
  }

  /** Closes the call's connection and media, then reports it if it ended (not a glare loser). */
  private async release(callId: string, state: CallState): Promise<void> {
    const session = this.sessions.get(callId);
    if (session && !session.released) {
      session.released = true;
      this.stopLostTimer(session);
      this.sessions.delete(callId);
      // Read again at the end: a remote candidate first seen as peer-reflexive (its connectivity
      // check beat its signaling) is by now named by the candidate the peer sent.
      const connected = state.status === 'ended' && state.connectedAt !== undefined;
      if (connected) await this.capturePath(session);
      try {
        session.pc?.close();
      } catch {
        // Already closed.
      }
      try {
        session.media?.stop();
      } catch {
        // Already stopped.
      }
    }
    if (state.status !== 'ended' || state.call.callId !== callId) return;
    const path = session?.path;
    this.finished({
      callId,
      peer: state.call.peer,
      direction: state.call.direction,
      reason: state.reason,
      ...(state.detail === undefined ? {} : { detail: state.detail }),
      ...(session?.failureCode === undefined ? {} : { code: session.failureCode }),
      connected: state.connectedAt !== undefined,
      relay: path !== undefined && (path.local === 'relay' || path.remote === 'relay'),
      relayOnly: session?.relayOnly ?? false,
      ...(path === undefined ? {} : { path }),
      durationMs: state.connectedAt === undefined ? 0 : state.endedAt - state.connectedAt,
      startedAt: state.call.startedAt,
      endedAt: state.endedAt,
    });
  }

  private finished(summary: CallSummary): void {
    this.recent.push(summary);
    if (this.recent.length > RECENT_SUMMARIES) this.recent.shift();
    const waiting = this.waiting.get(summary.callId) ?? [];
    this.waiting.delete(summary.callId);
    for (const resolve of waiting) resolve(summary);
    this.emit({ type: 'call-ended', summary });
  }

  /** Ends the current call (a ringing one silently) and stops the timers. */
  async close(): Promise<void> {
    const state = this.machine.state;
    if (state.status === 'ringing') {
      await this.apply(this.machine.dispatch({ type: 'failed', detail: 'the client closed' }));
    } else if (state.status !== 'idle' && state.status !== 'ended') {
      await this.apply(this.machine.dispatch({ type: 'hangup' }));
    }
    await Promise.all([...this.inflight]);
    this.machine.dispose();
  }
}
