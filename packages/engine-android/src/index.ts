export { BridgeError, KotlinBridge, type BridgeFailure } from './bridge.ts';
export { openKotlinEngine, type KotlinEngine, type KotlinEngineOptions } from './kotlin-engine.ts';
export { CACHE, locateToolchain, prepareToolchain, type Toolchain } from './toolchain.ts';
