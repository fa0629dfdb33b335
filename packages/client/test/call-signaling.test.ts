import { describe, expect, it } from 'vitest';
import {
  CallError,
  CallManager,
  ClientError,
  candidateType,
  decodeContent,
  encodeContent,
  selectedPath,
  stripAddresses,
  type Address,
  type CallManagerDeps,
  type CallMedia,
  type CallOptions,
  type CallSignal,
  type CallSummary,
  type Content,
  type IceCandidateInit,
  type MediaTrackLike,
  type PeerConnectionConfig,
  type PeerConnectionLike,
  type SessionDescriptionInit,
  type StatsReportLike,
  type AccountId,
} from '../src/index.ts';
import { accountIdOf, deviceIdOf } from '../src/testing/ids.ts';

/**
 * Call signaling without a network: the content format of call signals, the SDP and stats
 * helpers, and two call managers wired to each other over fake peer connections, to check what
 * each side sends (stored or online-only, with which addresses) and what it gives its WebRTC
 * stack. The real stack, relay and TURN server are in engine-node's calls.integration.test.ts.
 */

const SDP = [
  'v=0',
  'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'm=audio 51437 UDP/TLS/RTP/SAVPF 111',
  'c=IN IP4 192.0.2.2',
  'a=rtcp:51437 IN IP4 192.0.2.2',
  'a=candidate:3229573512 1 udp 2122194687 192.0.2.2 51437 typ host generation 0',
  'a=candidate:213309110 1 udp 41819903 203.0.113.7 23515 typ relay raddr 0.0.0.0 rport 0',
  'a=end-of-candidates',
  'a=mid:0',
  'm=video 0 UDP/TLS/RTP/SAVPF 96',
  'c=IN IP6 fd00::2',
  '',
].join('\r\n');

const HOST = 'candidate:1 1 udp 2122194687 192.0.2.2 51437 typ host generation 0';
const SRFLX = 'candidate:2 1 udp 1686052607 198.51.100.4 40000 typ srflx raddr 192.0.2.2';
const RELAY = 'candidate:3 1 udp 41819903 203.0.113.7 23515 typ relay raddr 0.0.0.0 rport 0';

describe('call contents', () => {
  const base = { id: 'm1', sentAt: 1 };
  const callId = '0123456789abcdef0123456789abcdef';
  const signals: CallSignal[] = [
    { type: 'offer', sdp: 'v=0\r\n' },
    { type: 'answer', sdp: 'v=0\r\n' },
    { type: 'ice', candidates: [{ candidate: RELAY, sdpMid: '0', sdpMLineIndex: 0 }] },
    { type: 'hangup', reason: 'declined' },
    { type: 'hangup', reason: 'failed', code: 'TURN_NOT_CONFIGURED' },
    { type: 'busy' },
  ];

  it('round-trip, also inside a sync copy, padded like every content', () => {
    for (const signal of signals) {
      const content: Content = { kind: 'call', ...base, callId, signal };
      const encoded = encodeContent(content);
      expect(encoded.length % 160).toBe(0);
      expect(decodeContent(encoded)).toEqual(content);
      const sync: Content = {
        kind: 'sync',
        ...base,
        to: accountIdOf('2b4f0f2c-3f6e-4c55-9c0e-6a0d2f1f9a11'),
        content,
      };
      expect(decodeContent(encodeContent(sync))).toEqual(sync);
    }
  });

  it('refuse malformed signals', () => {
    const bad: unknown[] = [
      { callId: 'short', signal: { type: 'busy' } },
      { callId: 'has spaces in it', signal: { type: 'busy' } },
      { callId, signal: { type: 'offer' } },
      { callId, signal: { type: 'offer', sdp: 'x'.repeat(40_000) } },
      { callId, signal: { type: 'ice', candidates: 'no' } },
      { callId, signal: { type: 'ice', candidates: Array(33).fill({ candidate: RELAY }) } },
      { callId, signal: { type: 'ice', candidates: [{ sdpMid: '0' }] } },
      { callId, signal: { type: 'hangup', reason: 'answered-elsewhere' } },
      { callId, signal: { type: 'hangup', reason: 'because' } },
      { callId, signal: { type: 'video' } },
      { callId, signal: null },
    ];
    for (const fields of bad) {
      const json = JSON.stringify({ v: 1, kind: 'call', ...base, ...(fields as object) });
      const bytes = new Uint8Array(Math.ceil((json.length + 1) / 160) * 160);
      bytes.set(new TextEncoder().encode(json));
      bytes[json.length] = 0x80;
      expect(() => decodeContent(bytes), json.slice(0, 120)).toThrow();
    }
  });

  it('drop a hangup code that is not an error code, and keep the hangup', () => {
    for (const code of ['free text', 'x'.repeat(10), 'A'.repeat(65), 42, '\u001b[2J']) {
      const json = JSON.stringify({
        v: 1,
        kind: 'call',
        ...base,
        callId,
        signal: { type: 'hangup', reason: 'failed', code },
      });
      const bytes = new Uint8Array(Math.ceil((json.length + 1) / 160) * 160);
      bytes.set(new TextEncoder().encode(json));
      bytes[json.length] = 0x80;
      expect(decodeContent(bytes)).toMatchObject({ signal: { type: 'hangup', reason: 'failed' } });
      expect((decodeContent(bytes) as { signal: object }).signal).not.toHaveProperty('code');
    }
  });

  it('keep only the candidate fields WebRTC needs', () => {
    const content = decodeContent(
      encodeContent({
        kind: 'call',
        ...base,
        callId,
        signal: {
          type: 'ice',
          candidates: [
            { candidate: RELAY, sdpMid: '0', sdpMLineIndex: 0, extra: 'x' } as never,
            { candidate: HOST, sdpMLineIndex: 1.5 } as never,
          ],
        },
      }),
    );
    expect(content).toMatchObject({
      signal: {
        candidates: [{ candidate: RELAY, sdpMid: '0', sdpMLineIndex: 0 }, { candidate: HOST }],
      },
    });
  });
});

describe('SDP and stats helpers', () => {
  it('stripAddresses removes candidates and addresses, keeps the rest', () => {
    const stripped = stripAddresses(SDP);
    expect(stripped).not.toContain('candidate');
    for (const address of ['192.0.2.2', '203.0.113.7', 'fd00::2', '51437']) {
      expect(stripped).not.toContain(address);
    }
    expect(stripped.split('\r\n')).toEqual([
      'v=0',
      'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
      's=-',
      't=0 0',
      'a=group:BUNDLE 0',
      'm=audio 9 UDP/TLS/RTP/SAVPF 111',
      'c=IN IP4 0.0.0.0',
      'a=rtcp:9 IN IP4 0.0.0.0',
      'a=mid:0',
      // A rejected section stays rejected.
      'm=video 0 UDP/TLS/RTP/SAVPF 96',
      'c=IN IP6 ::',
      '',
    ]);
  });

  it('candidateType reads the type of a candidate line', () => {
    expect(candidateType(HOST)).toBe('host');
    expect(candidateType(SRFLX)).toBe('srflx');
    expect(candidateType(RELAY)).toBe('relay');
    expect(candidateType('garbage')).toBeUndefined();
  });

  const report = (stats: Record<string, unknown>[]): StatsReportLike =>
    new Map(stats.map((s) => [s.id as string, s])) as unknown as StatsReportLike;
  const candidates = [
    { id: 'L1', type: 'local-candidate', candidateType: 'host', protocol: 'udp' },
    {
      id: 'L2',
      type: 'local-candidate',
      candidateType: 'relay',
      protocol: 'udp',
      relayProtocol: 'tls',
    },
    { id: 'R1', type: 'remote-candidate', candidateType: 'prflx' },
    { id: 'R2', type: 'remote-candidate', candidateType: 'relay' },
  ];

  it('selectedPath follows the transport’s selected pair', () => {
    const stats = report([
      ...candidates,
      {
        id: 'P1',
        type: 'candidate-pair',
        localCandidateId: 'L1',
        remoteCandidateId: 'R1',
        nominated: true,
        state: 'succeeded',
      },
      { id: 'P2', type: 'candidate-pair', localCandidateId: 'L2', remoteCandidateId: 'R2' },
      { id: 'T', type: 'transport', selectedCandidatePairId: 'P2' },
    ]);
    // A relay candidate's transport is how it reaches the TURN server (here TLS), not the UDP
    // its relayed address speaks.
    expect(selectedPath(stats)).toEqual({ local: 'relay', remote: 'relay', transport: 'tls' });
  });

  it('selectedPath falls back to the nominated, succeeded pair, and is undefined without one', () => {
    const pairs = [
      {
        id: 'P1',
        type: 'candidate-pair',
        localCandidateId: 'L1',
        remoteCandidateId: 'R1',
        nominated: true,
        state: 'succeeded',
      },
      {
        id: 'P2',
        type: 'candidate-pair',
        localCandidateId: 'L2',
        remoteCandidateId: 'R2',
        nominated: false,
        state: 'succeeded',
      },
    ];
    expect(selectedPath(report([...candidates, ...pairs]))).toEqual({
      local: 'host',
      remote: 'prflx',
      transport: 'udp',
    });
    expect(selectedPath(report([...candidates, pairs[1]!]))).toBeUndefined();
    expect(selectedPath(report([]))).toBeUndefined();
  });
});

// ---- two managers over fake peer connections -----------------------------------------------

class FakeTrack implements MediaTrackLike {
  readonly kind = 'audio';
  enabled = true;
  stopped = false;
  stop(): void {
    this.stopped = true;
  }
}

class FakeMedia implements CallMedia {
  readonly track = new FakeTrack();
  remote: MediaTrackLike | undefined;
  stopped = false;
  onRemoteTrack(track: MediaTrackLike): void {
    this.remote = track;
  }
  stop(): void {
    this.stopped = true;
  }
}

type Listener = (event: never) => void;

class FakePeerConnection implements PeerConnectionLike {
  connectionState = 'new';
  iceConnectionState = 'new';
  local: SessionDescriptionInit | undefined;
  remote: SessionDescriptionInit | undefined;
  readonly added: IceCandidateInit[] = [];
  readonly tracks: MediaTrackLike[] = [];
  closed = false;
  /** What getStats says the selected pair's remote candidate is; `undefined` makes it throw. */
  remoteType: string | undefined = 'host';
  private readonly listeners = new Map<string, Listener[]>();

  constructor(
    readonly config: PeerConnectionConfig,
    private readonly gather: string[],
  ) {}

  async createOffer(): Promise<SessionDescriptionInit> {
    return { type: 'offer', sdp: SDP };
  }
  async createAnswer(): Promise<SessionDescriptionInit> {
    return { type: 'answer', sdp: SDP };
  }
  async setLocalDescription(description: SessionDescriptionInit): Promise<void> {
    this.local = description;
    // Gathering starts now; candidates come a little later.
    setTimeout(() => {
      for (const candidate of this.gather)
        this.fire('icecandidate', { candidate: { candidate, sdpMid: '0', sdpMLineIndex: 0 } });
      this.fire('icecandidate', { candidate: null });
    }, 1);
  }
  async setRemoteDescription(description: SessionDescriptionInit): Promise<void> {
    this.remote = description;
  }
  async addIceCandidate(candidate: IceCandidateInit): Promise<void> {
    this.added.push(candidate);
  }
  addTrack(track: MediaTrackLike): unknown {
    this.tracks.push(track);
    return {};
  }
  async getStats(): Promise<StatsReportLike> {
    if (this.remoteType === undefined) throw new Error('no stats');
    return new Map([
      ['L', { id: 'L', type: 'local-candidate', candidateType: 'relay' }],
      ['R', { id: 'R', type: 'remote-candidate', candidateType: this.remoteType }],
      ['P', { id: 'P', type: 'candidate-pair', localCandidateId: 'L', remoteCandidateId: 'R' }],
      ['T', { id: 'T', type: 'transport', selectedCandidatePairId: 'P' }],
    ]) as unknown as StatsReportLike;
  }
  close(): void {
    this.closed = true;
  }
  addEventListener(type: string, listener: Listener): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  fire(type: string, event: unknown = {}): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event as never);
  }
  setState(state: string): void {
    this.connectionState = state;
    this.fire('connectionstatechange');
  }
}

interface Sent {
  from: string;
  to: string;
  callId: string;
  signal: CallSignal;
  online: boolean;
  sync: boolean;
}

const TURN = {
  urls: ['turn:turn.test:3478?transport=udp'],
  username: '1900000000:abcdefghijklmnopqrstuv',
  password: 'c2VjcmV0c2VjcmV0c2VjcmV0c2U=',
  ttlSeconds: 3600,
};

/** The test's accounts, by name (account ids are UUIDs). */
const ID = {
  alice: accountIdOf('a11ce000-0000-4000-8000-000000000001'),
  bob: accountIdOf('b0b00000-0000-4000-8000-000000000002'),
  carol: accountIdOf('ca201000-0000-4000-8000-000000000003'),
  dave: accountIdOf('da7e0000-0000-4000-8000-000000000004'),
  mallory: accountIdOf('ba11ad00-0000-4000-8000-000000000005'),
};

interface Side {
  name: string;
  manager: CallManager;
  pcs: FakePeerConnection[];
  summaries: CallSummary[];
}

/** Two managers whose signals reach each other at once (unless `deliver` is false). */
const world = (
  options: {
    verified?: boolean;
    turn?: 'ok' | 'fail';
    gather?: string[];
    calls?: CallOptions;
    now?: () => number;
    /** Per side, instead of `verified` and `turn`. */
    sides?: Record<string, { verified?: boolean; turn?: 'ok' | 'fail' }>;
  } = {},
) => {
  const sent: Sent[] = [];
  const sides = new Map<AccountId, Side>();
  const make = (name: keyof typeof ID, deviceId = 1): Side => {
    const pcs: FakePeerConnection[] = [];
    const summaries: CallSummary[] = [];
    const self: Address = { accountId: ID[name], deviceId: deviceIdOf(deviceId) };
    const deps: CallManagerDeps = {
      send: async (to, callId, signal, sendOptions) => {
        sent.push({ from: name, to, callId, signal, ...sendOptions });
        const peer = sides.get(to);
        peer?.manager.receive(self, callId, signal, (options.now ?? Date.now)());
      },
      turnCredentials: async () => {
        if ((options.sides?.[name]?.turn ?? options.turn) === 'fail')
          // As the relay API says it: a refusal with the relay's code.
          throw new ClientError(
            'RELAY_REFUSED',
            'the relay refused (TURN_NOT_CONFIGURED)',
            'TURN_NOT_CONFIGURED',
          );
        return TURN;
      },
      identityState: async () => ({
        identityKey: new Uint8Array(33),
        verified: (options.sides?.[name]?.verified ?? options.verified) === true,
        changed: false,
      }),
      self: () => self,
      randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
      now: options.now ?? Date.now,
    };
    const manager = new CallManager(deps, {
      webrtc: {
        RTCPeerConnection: class extends FakePeerConnection {
          constructor(config: PeerConnectionConfig) {
            super(config, options.gather ?? [HOST, SRFLX, RELAY]);
            pcs.push(this);
          }
        },
      },
      media: () => new FakeMedia(),
      ...options.calls,
    });
    manager.subscribe((event) => {
      if (event.type === 'call-ended') summaries.push(event.summary);
    });
    const side = { name, manager, pcs, summaries };
    sides.set(self.accountId, side);
    return side;
  };
  return { sent, make };
};

const settle = async (check: () => boolean): Promise<void> => {
  await expect.poll(check, { timeout: 2_000, interval: 5 }).toBe(true);
};

describe('call manager signaling', () => {
  it('an unverified contact: relay-only, TURN from the relay, stored SDP without addresses, ICE online-only after the answer', async () => {
    const { sent, make } = world();
    const alice = make('alice');
    const bob = make('bob');
    const observed: Record<string, string[]> = {};
    const observer = (who: string) => ({
      candidate: (direction: string, candidate: string) =>
        (observed[`${who} ${direction}`] ??= []).push(candidate),
    });
    const call = await alice.manager.start(ID.bob, { observer: observer('alice') });
    await settle(() => bob.manager.state.status === 'ringing');
    // Alice's candidates wait for the answer: Bob may not even be online yet.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent.map((s) => s.signal.type)).toEqual(['offer']);
    await bob.manager.accept({ observer: observer('bob') });
    await settle(() => alice.manager.state.status === 'connecting');
    await settle(() => sent.filter((s) => s.signal.type === 'ice').length === 2);

    for (const pc of [...alice.pcs, ...bob.pcs]) {
      expect(pc.config).toEqual({
        iceServers: [{ urls: TURN.urls, username: TURN.username, credential: TURN.password }],
        iceTransportPolicy: 'relay',
        bundlePolicy: 'max-bundle',
      });
      expect(pc.tracks).toHaveLength(1);
    }
    const [offer, answer] = [sent[0]!, sent[1]!];
    expect(offer).toMatchObject({ from: 'alice', to: ID.bob, online: false, sync: false });
    expect(answer).toMatchObject({
      from: 'bob',
      to: ID.alice,
      callId: call.callId,
      online: false,
      // Bob's other devices hear of it and stop ringing.
      sync: true,
    });
    for (const { signal } of [offer, answer]) {
      const sdp = (signal as { sdp: string }).sdp;
      expect(sdp).not.toContain('candidate');
      expect(sdp).not.toContain('192.0.2.2');
      expect(sdp).not.toContain('203.0.113.7');
    }
    expect(bob.pcs[0]!.remote).toEqual({ type: 'offer', sdp: stripAddresses(SDP) });
    const ice = sent.filter((s) => s.signal.type === 'ice');
    // Relay-only: the host and server-reflexive candidates the stack offered never left.
    for (const s of ice) {
      expect(s.online).toBe(true);
      expect(s.signal).toEqual({
        type: 'ice',
        candidates: [{ candidate: RELAY, sdpMid: '0', sdpMLineIndex: 0 }],
      });
    }
    expect(alice.pcs[0]!.added.map((c) => c.candidate)).toEqual([RELAY]);
    expect(bob.pcs[0]!.added.map((c) => c.candidate)).toEqual([RELAY]);
    // The diagnostics see what left and what arrived, nothing else.
    expect(observed).toEqual({
      'alice sent': [RELAY],
      'alice received': [RELAY],
      'bob sent': [RELAY],
      'bob received': [RELAY],
    });

    alice.pcs[0]!.setState('connected');
    bob.pcs[0]!.setState('connected');
    await settle(() => alice.manager.state.status === 'connected');
    await alice.manager.hangup();
    await settle(() => alice.summaries.length === 1 && bob.summaries.length === 1);
    expect(alice.summaries[0]).toMatchObject({
      reason: 'hung-up',
      connected: true,
      relay: true,
      relayOnly: true,
      path: { local: 'relay', remote: 'host' },
    });
    expect(bob.summaries[0]).toMatchObject({ reason: 'hung-up', connected: true });
    expect(alice.pcs[0]!.closed && bob.pcs[0]!.closed).toBe(true);
    expect(sent.at(-1)).toMatchObject({
      from: 'alice',
      signal: { type: 'hangup', reason: 'hung-up' },
      online: false,
    });
  });

  it('a connected call that stays disconnected ends as lost; a short outage does not end it', async () => {
    const { make } = world({ calls: { lostTimeoutMs: 200 } });
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.manager.state.status === 'connecting');
    alice.pcs[0]!.setState('connected');
    bob.pcs[0]!.setState('connected');
    await settle(() => alice.manager.state.status === 'connected');
    await settle(() => bob.manager.state.status === 'connected');

    // Bob's outage ends within the time: his call goes on.
    bob.pcs[0]!.setState('disconnected');
    await new Promise((resolve) => setTimeout(resolve, 50));
    bob.pcs[0]!.setState('connected');
    // Alice's never does (her peer's address changed): her call ends, saying why.
    alice.pcs[0]!.setState('disconnected');
    await settle(() => alice.summaries.length === 1);
    expect(alice.summaries[0]).toMatchObject({
      reason: 'failed',
      connected: true,
      detail: expect.stringMatching(/^the connection was lost .*; no media for 0\.2 s$/),
    });
    // Bob was still connected when the hangup reached him; he did not fail on his own.
    await settle(() => bob.summaries.length === 1);
    expect(bob.summaries[0]).toMatchObject({ connected: true });
    expect(bob.summaries[0]!.detail ?? '').not.toMatch(/lost/);
  });

  it('the summary names the pair in use at the end: a peer-reflexive remote becomes the candidate the peer sent', async () => {
    const { make } = world();
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.manager.state.status === 'connecting');
    // The peer's check arrived before its candidate did: at first the stack calls it prflx.
    alice.pcs[0]!.remoteType = 'prflx';
    bob.pcs[0]!.remoteType = 'prflx';
    alice.pcs[0]!.setState('connected');
    bob.pcs[0]!.setState('connected');
    await settle(() => alice.manager.state.status === 'connected');
    await settle(() => bob.manager.state.status === 'connected');
    // Then the signaled candidate names it; Bob's stats are gone by the end.
    alice.pcs[0]!.remoteType = 'relay';
    bob.pcs[0]!.remoteType = undefined;
    await alice.manager.hangup();
    await settle(() => alice.summaries.length === 1 && bob.summaries.length === 1);
    expect(alice.summaries[0]).toMatchObject({
      relay: true,
      path: { local: 'relay', remote: 'relay' },
    });
    // Without stats at the end, the path read at connection stands.
    expect(bob.summaries[0]).toMatchObject({
      relay: true,
      path: { local: 'relay', remote: 'prflx' },
    });
  });

  it('a verified contact: every candidate type, unless relay-only is asked for', async () => {
    const { sent, make } = world({ verified: true });
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => bob.pcs[0]!.added.length === 3 && alice.pcs[0]!.added.length === 3);
    expect(sent.filter((s) => s.signal.type === 'ice').every((s) => s.online)).toBe(true);
    expect(alice.pcs[0]!.config.iceTransportPolicy).toBe('all');
    expect(bob.pcs[0]!.added.map((c) => c.candidate)).toEqual([HOST, SRFLX, RELAY]);
    await alice.manager.hangup();

    await alice.manager.start(ID.bob, { relayOnly: true });
    expect(alice.pcs[1]!.config.iceTransportPolicy).toBe('relay');
    await alice.manager.hangup();

    const always = world({ verified: true, calls: { alwaysRelay: true } }).make('carol');
    await always.manager.start(ID.dave);
    expect(always.pcs[0]!.config.iceTransportPolicy).toBe('relay');
    await always.manager.hangup();
    always.manager.setAlwaysRelay(false);
    await always.manager.start(ID.dave);
    expect(always.pcs[1]!.config.iceTransportPolicy).toBe('all');
  });

  it('without TURN: a relay-only call fails before any offer, a direct one goes ahead', async () => {
    const unverified = world({ turn: 'fail' });
    const alice = unverified.make('alice');
    await alice.manager.start(ID.bob);
    expect(alice.manager.state).toMatchObject({ status: 'ended', reason: 'failed' });
    expect(alice.summaries[0]?.detail).toContain('TURN_NOT_CONFIGURED');
    expect(unverified.sent).toEqual([]);
    expect(alice.pcs).toEqual([]);

    const verified = world({ turn: 'fail', verified: true });
    const carol = verified.make('carol');
    await carol.manager.start(ID.dave);
    expect(carol.pcs[0]!.config.iceServers).toEqual([]);
    expect(verified.sent.map((s) => s.signal.type)).toEqual(['offer']);
  });

  it('a callee that cannot set up the call tells the caller why (its error code)', async () => {
    // Alice verified Bob (a direct call needs no TURN); Bob did not, so he needs TURN, which
    // the relay lacks: the failure happens on Bob's side, and Alice learns its code.
    const { sent, make } = world({
      sides: { alice: { verified: true, turn: 'fail' }, bob: { verified: false, turn: 'fail' } },
    });
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.summaries.length === 1 && bob.summaries.length === 1);
    expect(bob.summaries[0]).toMatchObject({ reason: 'failed' });
    expect(bob.summaries[0]!.detail).toContain('TURN_NOT_CONFIGURED');
    expect(sent.find((s) => s.signal.type === 'hangup')?.signal).toEqual({
      type: 'hangup',
      reason: 'failed',
      code: 'TURN_NOT_CONFIGURED',
    });
    expect(alice.summaries[0]).toMatchObject({
      reason: 'failed',
      detail: 'their device could not take part (TURN_NOT_CONFIGURED)',
    });
  });

  it('mute disables the microphone track while the call goes on, and a new call starts unmuted', async () => {
    const { make } = world();
    const alice = make('alice');
    const bob = make('bob');
    const muted: boolean[] = [];
    alice.manager.subscribe((event) => {
      if (event.type === 'call-muted') muted.push(event.muted);
    });
    expect(() => alice.manager.setMuted(true)).toThrow(CallError);
    const media = new FakeMedia();
    await alice.manager.start(ID.bob, { media });
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.manager.state.status === 'connecting');
    alice.manager.setMuted(true);
    expect(media.track.enabled).toBe(false);
    expect(alice.manager.muted).toBe(true);
    alice.manager.setMuted(false);
    expect(media.track.enabled).toBe(true);
    alice.manager.setMuted(true);
    await alice.manager.hangup();
    const next = new FakeMedia();
    await settle(() => bob.manager.state.status !== 'connecting');
    await alice.manager.start(ID.bob, { media: next });
    expect(alice.manager.muted).toBe(false);
    expect(next.track.enabled).toBe(true);
    expect(muted).toEqual([true, false, true, false]);
  });

  it('a microphone the platform may not use ends the call "failed" with MICROPHONE_DENIED', async () => {
    const { make } = world({
      calls: {
        media: () => {
          throw new CallError('MICROPHONE_DENIED', 'the microphone permission was refused');
        },
      },
    });
    const alice = make('alice');
    await alice.manager.start(ID.bob);
    await settle(() => alice.summaries.length === 1);
    expect(alice.summaries[0]).toMatchObject({ reason: 'failed', code: 'MICROPHONE_DENIED' });
  });

  it('a connection that fails ends the call "failed" on both sides', async () => {
    const { make } = world();
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.manager.state.status === 'connecting');
    alice.pcs[0]!.setState('failed');
    await settle(() => alice.summaries.length === 1 && bob.summaries.length === 1);
    expect(alice.summaries[0]).toMatchObject({ reason: 'failed', detail: 'the connection failed' });
    expect(bob.summaries[0]).toMatchObject({ reason: 'failed' });
  });

  it('an offer that arrives after its ringing time does not ring: a missed call', async () => {
    let now = 1_000_000;
    const { make } = world({ now: () => now, calls: { ringTimeoutMs: 5_000 } });
    const bob = make('bob');
    bob.manager.receive(
      { accountId: ID.alice, deviceId: deviceIdOf(1) },
      'cafecafecafecafe',
      { type: 'offer', sdp: SDP },
      now - 5_001,
    );
    await settle(() => bob.summaries.length === 1);
    expect(bob.manager.state.status).toBe('idle');
    expect(bob.summaries[0]).toMatchObject({ reason: 'no-answer', direction: 'incoming' });
    now += 1;
  });

  it('only the peer, and once it answered only its answering device, can end the call', async () => {
    const { make } = world();
    const alice = make('alice');
    const bob = make('bob');
    const call = await alice.manager.start(ID.bob);
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.accept();
    await settle(() => alice.manager.state.status === 'connecting');
    // The answer came from Bob's device 1; his device 2 and Mallory are not in this call.
    alice.manager.receive(
      { accountId: ID.mallory, deviceId: deviceIdOf(1) },
      call.callId,
      { type: 'hangup', reason: 'hung-up' },
      Date.now(),
    );
    alice.manager.receive(
      { accountId: ID.bob, deviceId: deviceIdOf(2) },
      call.callId,
      { type: 'hangup', reason: 'declined' },
      Date.now(),
    );
    alice.manager.receive(
      { accountId: ID.bob, deviceId: deviceIdOf(2) },
      call.callId,
      { type: 'ice', candidates: [{ candidate: HOST }] },
      Date.now(),
    );
    alice.manager.receive(
      { accountId: ID.bob, deviceId: deviceIdOf(1) },
      call.callId,
      { type: 'busy' },
      Date.now(),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(alice.manager.state.status).toBe('connecting');
    expect(alice.pcs[0]!.added.map((c) => c.candidate)).not.toContain(HOST);
    alice.manager.receive(
      { accountId: ID.bob, deviceId: deviceIdOf(1) },
      call.callId,
      { type: 'hangup', reason: 'hung-up' },
      Date.now(),
    );
    await settle(() => alice.manager.state.status === 'ended');
  });

  it('without WebRTC a call still rings and can be declined, but not placed or answered', async () => {
    const { sent, make } = world({ calls: { webrtc: undefined } });
    const alice = make('alice');
    const bob = make('bob');
    await alice.manager.start(ID.bob);
    expect(alice.manager.state).toMatchObject({
      status: 'ended',
      reason: 'failed',
      detail: expect.stringContaining('no WebRTC'),
    });
    bob.manager.receive(
      { accountId: ID.carol, deviceId: deviceIdOf(1) },
      'c0ffeec0ffeec0ffee',
      { type: 'offer', sdp: SDP },
      Date.now(),
    );
    await settle(() => bob.manager.state.status === 'ringing');
    await bob.manager.decline();
    expect(bob.manager.state).toMatchObject({ status: 'ended', reason: 'declined' });
    expect(sent).toContainEqual(
      expect.objectContaining({
        from: 'bob',
        to: ID.carol,
        signal: { type: 'hangup', reason: 'declined' },
        sync: true,
      }),
    );
    await expect(bob.manager.accept()).rejects.toMatchObject({ code: 'CALL_STATE' });
  });
});
