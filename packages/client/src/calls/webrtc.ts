/**
 * The part of the W3C WebRTC API the call manager uses, declared here so that the core depends on
 * no implementation: Node injects `@roamhq/wrtc` (engine-node's webrtc.ts), Android
 * `react-native-webrtc`. Both have this shape; their own type declarations differ in detail, so
 * each adapter casts its constructor to `PeerConnectionConstructor` once.
 */

export interface IceServer {
  readonly urls: string | string[];
  readonly username?: string;
  readonly credential?: string;
}

export interface PeerConnectionConfig {
  readonly iceServers: IceServer[];
  /** 'relay' gathers and uses TURN candidates only: the peer never learns this device's address. */
  readonly iceTransportPolicy: 'all' | 'relay';
  readonly bundlePolicy?: 'balanced' | 'max-bundle' | 'max-compat';
}

export interface SessionDescriptionInit {
  readonly type: 'offer' | 'answer' | 'pranswer' | 'rollback';
  readonly sdp?: string;
}

export interface IceCandidateInit {
  readonly candidate: string;
  readonly sdpMid?: string | null;
  readonly sdpMLineIndex?: number | null;
}

/** A media track: the microphone (or a tone, a file) or the peer's audio. */
export interface MediaTrackLike {
  readonly kind: string;
  /** A disabled audio track sends silence (mute); absent in stacks that cannot. */
  enabled?: boolean;
  stop(): void;
}

/** RTCStatsReport is map-like; only iteration is used. */
export interface StatsReportLike {
  forEach(callback: (value: Record<string, unknown>) => void): void;
}

export interface PeerConnectionLike {
  /** Missing in older stacks: the ICE state stands in for it. */
  readonly connectionState?: string;
  readonly iceConnectionState: string;
  createOffer(): Promise<SessionDescriptionInit>;
  createAnswer(): Promise<SessionDescriptionInit>;
  setLocalDescription(description: SessionDescriptionInit): Promise<void>;
  setRemoteDescription(description: SessionDescriptionInit): Promise<void>;
  addIceCandidate(candidate: IceCandidateInit): Promise<void>;
  addTrack(track: MediaTrackLike, ...streams: unknown[]): unknown;
  getStats(): Promise<StatsReportLike>;
  close(): void;
  addEventListener(
    type: 'icecandidate',
    listener: (event: { candidate: IceCandidateInit | null }) => void,
  ): void;
  addEventListener(type: 'track', listener: (event: { track: MediaTrackLike }) => void): void;
  addEventListener(
    type: 'connectionstatechange' | 'iceconnectionstatechange',
    listener: () => void,
  ): void;
}

export type PeerConnectionConstructor = new (config: PeerConnectionConfig) => PeerConnectionLike;

/** What a platform injects to make calls. */
export interface WebRtc {
  readonly RTCPeerConnection: PeerConnectionConstructor;
}

/**
 * The audio of one call, provided by the interface: what to send (microphone, tone, file) and
 * what to do with what arrives (play, record, analyse). Used for one call, then stopped.
 */
export interface CallMedia {
  /** The audio track to send. */
  readonly track: MediaTrackLike;
  /** The peer's audio arrived. */
  onRemoteTrack(track: MediaTrackLike): void;
  /** The call is over: stop capturing and playing. */
  stop(): void;
}

export type CallMediaFactory = () => CallMedia | Promise<CallMedia>;

/** The candidate types of the selected pair, and how this side's end carries it, from getStats. */
export interface CandidatePath {
  /** 'host', 'srflx', 'prflx' or 'relay'. */
  readonly local: string;
  readonly remote: string;
  /**
   * How this side sends: for a relay candidate, how it reaches its TURN server ('udp', 'tcp' or
   * 'tls': a strict firewall's call shows which got through); otherwise 'udp' or 'tcp'. Absent
   * when the stack does not say.
   */
  readonly transport?: string;
}

const TRANSPORTS = new Set(['udp', 'tcp', 'tls']);

const text = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : undefined;

/**
 * The selected candidate pair's local and remote candidate types ('host', 'srflx', 'prflx',
 * 'relay') and this side's transport, from the transport's selectedCandidatePairId or, in stacks
 * without it, the pair flagged selected (or nominated and succeeded).
 */
export const selectedPath = (report: StatsReportLike): CandidatePath | undefined => {
  const byId = new Map<string, Record<string, unknown>>();
  let selectedId: string | undefined;
  report.forEach((stat) => {
    const id = text(stat.id);
    if (id !== undefined) byId.set(id, stat);
    if (stat.type === 'transport' && text(stat.selectedCandidatePairId))
      selectedId = text(stat.selectedCandidatePairId);
  });
  let pair = selectedId === undefined ? undefined : byId.get(selectedId);
  if (!pair) {
    pair = [...byId.values()].find(
      (stat) =>
        stat.type === 'candidate-pair' &&
        (stat.selected === true || (stat.nominated === true && stat.state === 'succeeded')),
    );
  }
  if (!pair) return undefined;
  const local = byId.get(text(pair.localCandidateId) ?? '');
  const remote = byId.get(text(pair.remoteCandidateId) ?? '');
  const localType = text(local?.candidateType);
  const remoteType = text(remote?.candidateType);
  if (localType === undefined || remoteType === undefined) return undefined;
  const transport = text(localType === 'relay' ? local?.relayProtocol : local?.protocol);
  return {
    local: localType,
    remote: remoteType,
    ...(transport !== undefined && TRANSPORTS.has(transport) ? { transport } : {}),
  };
};

/** The candidate type in an SDP candidate line ("… typ relay …"). */
export const candidateType = (candidate: string): string | undefined =>
  / typ ([a-z]+)/.exec(candidate)?.[1];

/**
 * An SDP to send inside a stored message, without anything that says where this device is:
 * candidate lines go (candidates travel online-only, never stored), connection addresses and
 * ports become the placeholders a description has before gathering.
 */
export const stripAddresses = (sdp: string): string =>
  sdp
    .split(/\r?\n/)
    .filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates')
    .map((line) => {
      if (line.startsWith('c=IN IP4 ')) return 'c=IN IP4 0.0.0.0';
      if (line.startsWith('c=IN IP6 ')) return 'c=IN IP6 ::';
      if (line.startsWith('a=rtcp:')) return 'a=rtcp:9 IN IP4 0.0.0.0';
      // Port 0 rejects a media section: it stays.
      const media = /^m=(\w+) (\d+) (.*)$/.exec(line);
      if (media && media[2] !== '0') return `m=${media[1]} 9 ${media[3]}`;
      return line;
    })
    .join('\r\n');
