export * from './engine.ts';
export * from './errors.ts';
export * from './content.ts';
export * from './store.ts';
export * from './transport.ts';
export * from './relay-api.ts';
export * from './client.ts';
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
