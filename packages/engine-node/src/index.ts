export { openNodeEngine, SEALED_SENDER_V1, type NodeEngineOptions } from './node-engine.ts';
export { PROVISIONING_VERSION } from './provisioning.ts';
export {
  analyseAudio,
  AudioRecorder,
  AudioSender,
  decodeWav,
  encodeWav,
  NodeCallMedia,
  nodeWebRtc,
  pcmSource,
  SAMPLE_RATE,
  silenceSource,
  toneSource,
  WavError,
  type AudioAnalysis,
  type PcmSource,
} from './webrtc.ts';
