export { openNodeEngine, SEALED_SENDER_V1 } from './node-engine.ts';
export { PROVISIONING_VERSION } from './provisioning.ts';
