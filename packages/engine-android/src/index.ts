export { KotlinBridge, openKotlinEngine } from './bridge.ts';
export {
  EngineRequestError,
  openRemoteEngine,
  parseAnswer,
  type EngineChannel,
  type EngineFailure,
  type RemoteEngine,
  type RemoteEngineOptions,
} from './remote-engine.ts';
export { CACHE, locateToolchain, prepareToolchain, type Toolchain } from './toolchain.ts';
export { EngineRequests } from './engine-requests.ts';
