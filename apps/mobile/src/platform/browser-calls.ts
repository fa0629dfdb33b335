import {
  CallError,
  type CallMedia,
  type CallOptions,
  type MediaTrackLike,
  type PeerConnectionConstructor,
} from '@privcomm/client';

/** The element that plays the peer's audio in the web build (the browser test reads it). */
export const REMOTE_AUDIO_ID = 'privcomm-remote-audio';

/**
 * The microphone as the call's audio, and an <audio> element that plays the peer's track. A
 * refused microphone is the core's MICROPHONE_DENIED (the call screen says what to do).
 */
const browserMicrophone = async (devices: MediaDevices): Promise<CallMedia> => {
  let stream: MediaStream;
  try {
    stream = await devices.getUserMedia({ audio: true, video: false });
  } catch (error) {
    // The browser's own error name for a refused or dismissed permission prompt.
    if (error instanceof DOMException && error.name === 'NotAllowedError')
      throw new CallError('MICROPHONE_DENIED', 'the browser refused the microphone');
    throw error;
  }
  const track = stream.getAudioTracks()[0];
  if (!track) throw new Error('no microphone track');
  const audio = document.createElement('audio');
  audio.id = REMOTE_AUDIO_ID;
  audio.autoplay = true;
  document.body.appendChild(audio);
  return {
    track: track as MediaTrackLike,
    onRemoteTrack: (remote) => {
      audio.srcObject = new MediaStream([remote as MediaStreamTrack]);
      // A browser may refuse to play before the page was touched; the call stays connected.
      audio.play().catch(() => undefined);
    },
    stop: () => {
      stream.getTracks().forEach((t) => t.stop());
      audio.srcObject = null;
      audio.remove();
    },
  };
};

/**
 * The browser's own WebRTC for the core's call manager (the web build), or undefined where the
 * page has none (no RTCPeerConnection, or no microphone API outside a secure context).
 */
export const browserCalls = (): CallOptions | undefined => {
  const Peer = globalThis.RTCPeerConnection;
  const devices = globalThis.navigator?.mediaDevices;
  if (typeof Peer !== 'function' || typeof devices?.getUserMedia !== 'function') return undefined;
  return {
    webrtc: { RTCPeerConnection: Peer as unknown as PeerConnectionConstructor },
    media: () => browserMicrophone(devices),
  };
};
