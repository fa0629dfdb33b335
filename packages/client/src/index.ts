export * from './engine.ts';
export * from './errors.ts';
export * from './content.ts';
export * from './store.ts';
export * from './sql-store.ts';
export * from './remote-store.ts';
export * from './transport.ts';
export * from './relay-api.ts';
export * from './client.ts';
export { DEFAULT_SYNC_COPY_DELAY, type SyncCopyDelay } from './sync-copies.ts';
export * from './contact-link.ts';
export * from './settings.ts';
export * from './logger.ts';
export * from './incoming.ts';
export {
  backoffDelay,
  fatalClose,
  fatalConnectError,
  INITIAL_BACKOFF_MS,
  MAX_BACKOFF_MS,
} from './reconnector.ts';
export { toBase64, fromBase64, toBase64Url, fromBase64Url } from './bytes.ts';
export * from './calls/index.ts';
export * from './discovery/index.ts';
export * from './groups/index.ts';
// The branded ids of the core's API (Address, Profile, ...), and the guards that make them:
// re-exported so that an engine or an app needs no direct dependency on the wire package.
export {
  isAccountId,
  isDeviceId,
  isEnvelopeId,
  type AccountId,
  type DeviceId,
  type EnvelopeId,
} from '@privcomm/wire';
