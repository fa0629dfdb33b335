export {
  MAX_GROUP_RECIPIENTS,
  openNodeEngine,
  SEALED_SENDER_V1,
  SEALED_SENDER_V2,
  SEALED_SENDER_V2_AT_REST,
  type NodeEngineOptions,
} from './node-engine.ts';
export { splitMultiRecipientMessage, type DeviceShare } from './multi-recipient.ts';
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
export { nodeBase64 } from './node-base64.ts';
