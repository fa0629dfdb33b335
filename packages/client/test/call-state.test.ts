import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  CallStateMachine,
  LEGAL_EVENTS,
  transition,
  type CallEvent,
  type CallEventType,
  type CallInfo,
  type CallState,
  type CallStatus,
  type Clock,
  type EndReason,
  type EventIn,
  type Transition,
} from '../src/calls/call-state.ts';
import { accountIdOf } from '../src/testing/ids.ts';

const TIMEOUTS = { ringTimeoutMs: 30_000, connectTimeoutMs: 10_000 };
const PEER = accountIdOf('9ee20000-0000-4000-8000-000000000001');
const OTHER = accountIdOf('07e20000-0000-4000-8000-000000000002');
const ALICE = accountIdOf('a11ce000-0000-4000-8000-000000000001');
const BOB = accountIdOf('b0b00000-0000-4000-8000-000000000002');
const T0 = 1_000_000;

const outgoingCall: CallInfo = {
  callId: 'bbbbbbbb',
  peer: PEER,
  direction: 'outgoing',
  startedAt: T0,
};
const incomingCall: CallInfo = { ...outgoingCall, direction: 'incoming' };

const STATES: Record<CallStatus, CallState> = {
  idle: { status: 'idle' },
  outgoing: { status: 'outgoing', call: outgoingCall },
  ringing: { status: 'ringing', call: incomingCall },
  connecting: { status: 'connecting', call: incomingCall, since: T0 },
  connected: { status: 'connected', call: incomingCall, connectedAt: T0 + 10 },
  ended: { status: 'ended', call: outgoingCall, reason: 'hung-up', endedAt: T0 + 20 },
};

/** One event of each type, about the call in STATES where it names one. */
const EVENTS: Record<CallEventType, CallEvent> = {
  place: { type: 'place', callId: 'cccccccc', peer: PEER },
  offer: { type: 'offer', callId: 'dddddddd', peer: OTHER },
  accept: { type: 'accept' },
  decline: { type: 'decline' },
  busy: { type: 'busy' },
  hangup: { type: 'hangup' },
  answer: { type: 'answer', callId: 'bbbbbbbb' },
  'remote-hangup': { type: 'remote-hangup', callId: 'bbbbbbbb', reason: 'hung-up' },
  'remote-busy': { type: 'remote-busy', callId: 'bbbbbbbb' },
  elsewhere: { type: 'elsewhere', callId: 'bbbbbbbb', outcome: 'answered' },
  connected: { type: 'connected' },
  failed: { type: 'failed', detail: 'boom' },
  timeout: { type: 'timeout' },
  reset: { type: 'reset' },
};

const at = (state: CallState, event: CallEvent, now = T0 + 100): Transition =>
  transition(state, event, now, TIMEOUTS);

describe('call state machine: legality', () => {
  it('accepts exactly the events listed for each state, and refused events change nothing', () => {
    for (const [status, state] of Object.entries(STATES) as [CallStatus, CallState][]) {
      for (const [type, event] of Object.entries(EVENTS) as [CallEventType, CallEvent][]) {
        const legal = (LEGAL_EVENTS[status] as readonly string[]).includes(type);
        const result = at(state, event, T0 + 60_000);
        expect(result.accepted, `${type} in ${status}`).toBe(legal);
        if (!legal) {
          expect(result.state).toBe(state);
          expect(result.effects).toEqual([]);
        }
      }
    }
  });

  it('offers, as types, only the events legal in a state', () => {
    // The types come from LEGAL_EVENTS; tsc checks them (npm run typecheck), this the table.
    expect([...LEGAL_EVENTS.idle].sort()).toEqual(['offer', 'place']);
    expect([...LEGAL_EVENTS.connected].sort()).toEqual([
      'failed',
      'hangup',
      'offer',
      'remote-hangup',
    ]);
    expectTypeOf<EventIn<'idle'>['type']>().toEqualTypeOf<'place' | 'offer'>();
    expectTypeOf<EventIn<'connected'>['type']>().toEqualTypeOf<
      'offer' | 'hangup' | 'remote-hangup' | 'failed'
    >();
    expectTypeOf<EventIn<'ringing'>>().toExtend<CallEvent>();
    expectTypeOf<{ type: 'answer'; callId: string }>().not.toExtend<EventIn<'ringing'>>();
  });
});

describe('call state machine: transitions', () => {
  it('place: idle or ended → outgoing, and the offer is sent', () => {
    for (const from of [STATES.idle, STATES.ended]) {
      const result = at(from, { type: 'place', callId: 'cccccccc', peer: PEER }, T0 + 5);
      expect(result.state).toEqual({
        status: 'outgoing',
        call: { callId: 'cccccccc', peer: PEER, direction: 'outgoing', startedAt: T0 + 5 },
      });
      expect(result.effects).toEqual([{ type: 'send-offer' }]);
    }
  });

  it('offer: idle or ended → ringing; the ended call’s own offer does not ring again', () => {
    for (const from of [STATES.idle, STATES.ended]) {
      const result = at(from, { type: 'offer', callId: 'eeeeeeee', peer: PEER }, T0 + 7);
      expect(result.state).toEqual({
        status: 'ringing',
        call: { callId: 'eeeeeeee', peer: PEER, direction: 'incoming', startedAt: T0 + 7 },
      });
      expect(result.effects).toEqual([]);
    }
    const late = at(STATES.ended, { type: 'offer', callId: 'bbbbbbbb', peer: PEER });
    expect(late).toEqual({ accepted: true, state: STATES.ended, effects: [] });
  });

  it('an offer during a call is answered busy and changes nothing; a duplicate is ignored', () => {
    for (const status of ['outgoing', 'ringing', 'connecting', 'connected'] as const) {
      const state = STATES[status];
      const other = at(state, { type: 'offer', callId: 'aaaaaaaa', peer: OTHER });
      expect(other.state, status).toBe(state);
      expect(other.effects).toEqual([{ type: 'send-busy', callId: 'aaaaaaaa', peer: OTHER }]);
      const duplicate = at(state, { type: 'offer', callId: 'bbbbbbbb', peer: PEER });
      expect(duplicate).toEqual({ accepted: true, state, effects: [] });
    }
    // The same peer calling again while it rings or talks is busy too (only outgoing is glare).
    const again = at(STATES.connected, { type: 'offer', callId: 'aaaaaaaa', peer: PEER });
    expect(again.effects).toEqual([{ type: 'send-busy', callId: 'aaaaaaaa', peer: PEER }]);
  });

  it('accept: ringing → connecting, and the answer is sent', () => {
    const result = at(STATES.ringing, { type: 'accept' }, T0 + 50);
    expect(result.state).toEqual({ status: 'connecting', call: incomingCall, since: T0 + 50 });
    expect(result.effects).toEqual([{ type: 'send-answer' }]);
  });

  it('decline (or hangup while ringing): ended declined, told to the caller and own devices', () => {
    for (const type of ['decline', 'hangup'] as const) {
      const result = at(STATES.ringing, { type }, T0 + 9);
      expect(result.state).toEqual({
        status: 'ended',
        call: incomingCall,
        reason: 'declined',
        endedAt: T0 + 9,
      });
      expect(result.effects).toEqual([
        { type: 'release', callId: 'bbbbbbbb' },
        { type: 'send-hangup', callId: 'bbbbbbbb', peer: PEER, reason: 'declined', sync: true },
      ]);
    }
  });

  it('busy while ringing: ended busy, the caller hears busy', () => {
    const result = at(STATES.ringing, { type: 'busy' });
    expect(result.state).toMatchObject({ status: 'ended', reason: 'busy' });
    expect(result.effects).toEqual([
      { type: 'release', callId: 'bbbbbbbb' },
      { type: 'send-busy', callId: 'bbbbbbbb', peer: PEER },
    ]);
  });

  it('hangup: outgoing, connecting, connected → ended hung-up; a connected call keeps its start', () => {
    for (const status of ['outgoing', 'connecting', 'connected'] as const) {
      const result = at(STATES[status], { type: 'hangup' }, T0 + 500);
      expect(result.state, status).toEqual({
        status: 'ended',
        call: (STATES[status] as { call: CallInfo }).call,
        reason: 'hung-up',
        endedAt: T0 + 500,
        ...(status === 'connected' ? { connectedAt: T0 + 10 } : {}),
      });
      expect(result.effects).toEqual([
        { type: 'release', callId: 'bbbbbbbb' },
        {
          type: 'send-hangup',
          callId: 'bbbbbbbb',
          peer: PEER,
          reason: 'hung-up',
          sync: false,
        },
      ]);
    }
  });

  it('answer: outgoing → connecting for its own call; another call’s answer is ignored', () => {
    const result = at(STATES.outgoing, { type: 'answer', callId: 'bbbbbbbb' }, T0 + 30);
    expect(result.state).toEqual({ status: 'connecting', call: outgoingCall, since: T0 + 30 });
    expect(result.effects).toEqual([{ type: 'apply-answer' }]);
    expect(at(STATES.outgoing, { type: 'answer', callId: 'ffffffff' })).toEqual({
      accepted: true,
      state: STATES.outgoing,
      effects: [],
    });
  });

  it('remote hangup ends any active call with the peer’s reason; other calls’ are ignored', () => {
    const reasons: [EndReason, EndReason][] = [
      ['hung-up', 'hung-up'],
      ['declined', 'declined'],
      ['busy', 'busy'],
      ['no-answer', 'no-answer'],
      ['failed', 'failed'],
      ['answered-elsewhere', 'hung-up'],
    ];
    for (const status of ['outgoing', 'ringing', 'connecting', 'connected'] as const) {
      for (const [theirs, ours] of reasons) {
        const result = at(STATES[status], {
          type: 'remote-hangup',
          callId: 'bbbbbbbb',
          reason: theirs,
        });
        expect(result.state, `${status} ${theirs}`).toMatchObject({
          status: 'ended',
          reason: ours,
        });
        expect(result.effects).toEqual([{ type: 'release', callId: 'bbbbbbbb' }]);
      }
      const foreign = at(STATES[status], {
        type: 'remote-hangup',
        callId: 'ffffffff',
        reason: 'hung-up',
      });
      expect(foreign.state).toBe(STATES[status]);
      expect(foreign.effects).toEqual([]);
    }
  });

  it('remote busy: outgoing → ended busy; the peer’s other devices are told to stop ringing', () => {
    const result = at(STATES.outgoing, { type: 'remote-busy', callId: 'bbbbbbbb' });
    expect(result.state).toMatchObject({ status: 'ended', reason: 'busy' });
    expect(result.effects).toEqual([
      { type: 'release', callId: 'bbbbbbbb' },
      { type: 'send-hangup', callId: 'bbbbbbbb', peer: PEER, reason: 'busy', sync: false },
    ]);
    expect(at(STATES.outgoing, { type: 'remote-busy', callId: 'ffffffff' }).state).toBe(
      STATES.outgoing,
    );
  });

  it('elsewhere: a ringing or connecting incoming call ends answered-elsewhere or declined', () => {
    for (const status of ['ringing', 'connecting'] as const) {
      const answered = at(STATES[status], {
        type: 'elsewhere',
        callId: 'bbbbbbbb',
        outcome: 'answered',
      });
      expect(answered.state).toMatchObject({ status: 'ended', reason: 'answered-elsewhere' });
      expect(answered.effects).toEqual([{ type: 'release', callId: 'bbbbbbbb' }]);
      const declined = at(STATES[status], {
        type: 'elsewhere',
        callId: 'bbbbbbbb',
        outcome: 'declined',
      });
      expect(declined.state).toMatchObject({ status: 'ended', reason: 'declined' });
    }
    // Our own outgoing call is not "answered elsewhere" by a sync copy.
    const own: CallState = { status: 'connecting', call: outgoingCall, since: T0 };
    const result = at(own, { type: 'elsewhere', callId: 'bbbbbbbb', outcome: 'answered' });
    expect(result.state).toBe(own);
    expect(result.effects).toEqual([]);
  });

  it('connected: connecting → connected, recording when', () => {
    const result = at(STATES.connecting, { type: 'connected' }, T0 + 77);
    expect(result.state).toEqual({ status: 'connected', call: incomingCall, connectedAt: T0 + 77 });
    expect(result.effects).toEqual([]);
  });

  it('failed: ends with the detail; the peer hears it unless the call was only ringing', () => {
    for (const status of ['outgoing', 'ringing', 'connecting', 'connected'] as const) {
      const result = at(STATES[status], { type: 'failed', detail: 'no TURN' }, T0 + 900);
      expect(result.state, status).toMatchObject({
        status: 'ended',
        reason: 'failed',
        detail: 'no TURN',
        endedAt: T0 + 900,
      });
      expect(result.effects[0]).toEqual({ type: 'release', callId: 'bbbbbbbb' });
      expect(result.effects.slice(1)).toEqual(
        status === 'ringing'
          ? []
          : [
              {
                type: 'send-hangup',
                callId: 'bbbbbbbb',
                peer: PEER,
                reason: 'failed',
                sync: false,
              },
            ],
      );
    }
  });

  it('timeout: ringing too long is no-answer, connecting too long is failed, early is ignored', () => {
    const early = at(STATES.outgoing, { type: 'timeout' }, T0 + TIMEOUTS.ringTimeoutMs - 1);
    expect(early).toEqual({ accepted: true, state: STATES.outgoing, effects: [] });
    const outgoing = at(STATES.outgoing, { type: 'timeout' }, T0 + TIMEOUTS.ringTimeoutMs);
    expect(outgoing.state).toMatchObject({ status: 'ended', reason: 'no-answer' });
    expect(outgoing.effects).toEqual([
      { type: 'release', callId: 'bbbbbbbb' },
      { type: 'send-hangup', callId: 'bbbbbbbb', peer: PEER, reason: 'no-answer', sync: false },
    ]);
    const ringing = at(STATES.ringing, { type: 'timeout' }, T0 + TIMEOUTS.ringTimeoutMs);
    expect(ringing.state).toMatchObject({ status: 'ended', reason: 'no-answer' });
    expect(ringing.effects).toEqual([{ type: 'release', callId: 'bbbbbbbb' }]);
    const connecting = at(STATES.connecting, { type: 'timeout' }, T0 + TIMEOUTS.connectTimeoutMs);
    expect(connecting.state).toMatchObject({ status: 'ended', reason: 'failed' });
    expect(connecting.effects).toEqual([
      { type: 'release', callId: 'bbbbbbbb' },
      { type: 'send-hangup', callId: 'bbbbbbbb', peer: PEER, reason: 'failed', sync: false },
    ]);
    const notYet = at(STATES.connecting, { type: 'timeout' }, T0 + TIMEOUTS.connectTimeoutMs - 1);
    expect(notYet.state).toBe(STATES.connecting);
  });

  it('reset: ended → idle', () => {
    expect(at(STATES.ended, { type: 'reset' })).toEqual({
      accepted: true,
      state: { status: 'idle' },
      effects: [],
    });
  });
});

describe('call state machine: glare', () => {
  it('the lower call id wins: the other side answers it instead of its own call', () => {
    const mine: CallState = {
      status: 'outgoing',
      call: { callId: 'bbbbbbbb', peer: PEER, direction: 'outgoing', startedAt: T0 },
    };
    const theirsLower = at(mine, { type: 'offer', callId: 'aaaaaaaa', peer: PEER }, T0 + 3);
    expect(theirsLower.state).toEqual({
      status: 'connecting',
      call: { callId: 'aaaaaaaa', peer: PEER, direction: 'incoming', startedAt: T0 + 3 },
      since: T0 + 3,
    });
    expect(theirsLower.effects).toEqual([
      { type: 'release', callId: 'bbbbbbbb' },
      { type: 'send-hangup', callId: 'bbbbbbbb', peer: PEER, reason: 'hung-up', sync: false },
      { type: 'send-answer' },
    ]);
    const theirsHigher = at(mine, { type: 'offer', callId: 'cccccccc', peer: PEER });
    expect(theirsHigher).toEqual({ accepted: true, state: mine, effects: [] });
  });

  it('both sides settle on the same call without talking to each other', () => {
    const clock = new FakeClock();
    const alice = new CallStateMachine(clock, TIMEOUTS);
    const bob = new CallStateMachine(clock, TIMEOUTS);
    alice.dispatch({ type: 'place', callId: '7f00aa', peer: BOB });
    bob.dispatch({ type: 'place', callId: '1c00bb', peer: ALICE });
    // Each offer arrives at the other side while it is still calling.
    const atAlice = alice.dispatch({ type: 'offer', callId: '1c00bb', peer: BOB });
    const atBob = bob.dispatch({ type: 'offer', callId: '7f00aa', peer: ALICE });
    expect(atAlice.effects.map((e) => e.type)).toEqual(['release', 'send-hangup', 'send-answer']);
    expect(atBob.effects).toEqual([]);
    expect(alice.state).toMatchObject({
      status: 'connecting',
      call: { callId: '1c00bb', direction: 'incoming' },
    });
    // Bob gets Alice's answer to his call (and the hangup of hers, which is not his call).
    bob.dispatch({ type: 'remote-hangup', callId: '7f00aa', reason: 'hung-up' });
    expect(bob.state.status).toBe('outgoing');
    bob.dispatch({ type: 'answer', callId: '1c00bb' });
    expect(bob.state).toMatchObject({
      status: 'connecting',
      call: { callId: '1c00bb', direction: 'outgoing' },
    });
  });

  it('an offer from someone else while calling is busy, not glare', () => {
    const result = at(STATES.outgoing, { type: 'offer', callId: 'aaaaaaaa', peer: OTHER });
    expect(result.state).toBe(STATES.outgoing);
    expect(result.effects).toEqual([{ type: 'send-busy', callId: 'aaaaaaaa', peer: OTHER }]);
  });
});

/** A clock whose time moves only when told; timers fire in order as it passes them. */
class FakeClock implements Clock {
  time = T0;
  private nextId = 1;
  private timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, timer]) => timer.at <= until)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = until;
  }
}

describe('call state machine: timeouts on the injected clock', () => {
  const setup = () => {
    const clock = new FakeClock();
    const seen: Transition[] = [];
    const machine = new CallStateMachine(clock, TIMEOUTS, (result) => seen.push(result));
    return { clock, machine, seen };
  };

  it('an unanswered outgoing call ends no-answer when the ringing timeout passes', () => {
    const { clock, machine, seen } = setup();
    machine.dispatch({ type: 'place', callId: 'aaaaaaaa', peer: PEER });
    clock.advance(TIMEOUTS.ringTimeoutMs - 1);
    expect(machine.state.status).toBe('outgoing');
    expect(seen).toEqual([]);
    clock.advance(1);
    expect(machine.state).toMatchObject({
      status: 'ended',
      reason: 'no-answer',
      endedAt: T0 + TIMEOUTS.ringTimeoutMs,
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.effects.map((e) => e.type)).toEqual(['release', 'send-hangup']);
    expect(clock.pending).toBe(0);
  });

  it('a call ringing here stops ringing at the timeout', () => {
    const { clock, machine, seen } = setup();
    machine.dispatch({ type: 'offer', callId: 'aaaaaaaa', peer: PEER });
    clock.advance(TIMEOUTS.ringTimeoutMs);
    expect(machine.state).toMatchObject({ status: 'ended', reason: 'no-answer' });
    expect(seen[0]!.effects).toEqual([{ type: 'release', callId: 'aaaaaaaa' }]);
  });

  it('answering replaces the ringing timeout with the connecting one', () => {
    const { clock, machine } = setup();
    machine.dispatch({ type: 'offer', callId: 'aaaaaaaa', peer: PEER });
    clock.advance(TIMEOUTS.ringTimeoutMs - 100);
    machine.dispatch({ type: 'accept' });
    expect(clock.pending).toBe(1);
    clock.advance(100); // the ringing deadline passes: nothing happens
    expect(machine.state.status).toBe('connecting');
    clock.advance(TIMEOUTS.connectTimeoutMs - 100);
    expect(machine.state).toMatchObject({ status: 'ended', reason: 'failed' });
  });

  it('a connected call has no timeout; ending a call clears its timer', () => {
    const { clock, machine, seen } = setup();
    machine.dispatch({ type: 'place', callId: 'aaaaaaaa', peer: PEER });
    machine.dispatch({ type: 'answer', callId: 'aaaaaaaa' });
    machine.dispatch({ type: 'connected' });
    expect(clock.pending).toBe(0);
    clock.advance(10 * TIMEOUTS.ringTimeoutMs);
    expect(machine.state.status).toBe('connected');
    machine.dispatch({ type: 'hangup' });
    machine.dispatch({ type: 'place', callId: 'bbbbbbbb', peer: PEER });
    machine.dispatch({ type: 'hangup' });
    expect(clock.pending).toBe(0);
    expect(seen).toEqual([]);
  });

  it('a timer that fires early (a coarse clock) arms again for the rest', () => {
    const clock = new FakeClock();
    const early: Clock = {
      now: () => clock.now(),
      setTimeout: (callback, ms) => clock.setTimeout(callback, ms > 1000 ? ms - 1000 : ms),
      clearTimeout: (handle) => clock.clearTimeout(handle),
    };
    const machine = new CallStateMachine(early, TIMEOUTS);
    machine.dispatch({ type: 'offer', callId: 'aaaaaaaa', peer: PEER });
    clock.advance(TIMEOUTS.ringTimeoutMs - 1000);
    expect(machine.state.status).toBe('ringing');
    clock.advance(1000);
    expect(machine.state).toMatchObject({ status: 'ended', reason: 'no-answer' });
  });

  it('dispose stops the timer', () => {
    const { clock, machine } = setup();
    machine.dispatch({ type: 'place', callId: 'aaaaaaaa', peer: PEER });
    machine.dispose();
    clock.advance(TIMEOUTS.ringTimeoutMs);
    expect(machine.state.status).toBe('outgoing');
  });
});
