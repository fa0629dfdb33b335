import {
  fromBase64,
  serveClientStore,
  StoreRecordError,
  toBase64,
  type AuthSigner,
  type ClientStore,
  type SignalEngine,
} from '@privcomm/client';
import { EngineRequestError } from '@privcomm/engine-android/remote';
import { EngineRequests } from '@privcomm/engine-android/serve';
import { describeNetworkError } from '../node-transport.ts';
import { param, RPC_ERRORS, RpcError, type Method, type Params } from './json-rpc.ts';

/**
 * What the web bridge serves: the parts of a device a browser cannot hold, so that the app's web
 * build runs the client core in the page with this profile's engine, store and login key:
 * - `engine`: the engine's requests (kotlin/core/EngineRequests.kt's protocol, as the phone's
 *   engine module speaks it), answered by the profile's Node engine; private keys never leave it;
 * - `store`: the client store's methods (the core's remote-store protocol), on the profile's store;
 * - `signer.publicKey`, `signer.sign`: the relay login key signs challenges here;
 * - `relay.fetch`: one HTTP exchange with the relay, since the relay sends no CORS headers (a
 *   browser may open its WebSocket, not read its HTTP answers).
 */

export interface WebBridgeDeps {
  readonly engine: SignalEngine;
  readonly store: ClientStore;
  readonly signer: AuthSigner;
  readonly fetch?: typeof globalThis.fetch;
}

/** The name the page opens the engine with (it cannot choose a file). */
export const BRIDGE_ENGINE = 'profile';

/** An HTTP exchange with the relay that takes longer than this fails, as in the CLI. */
const FETCH_TIMEOUT_MS = 15_000;

/** The daemon owns the engine: a page that closes its client must not close it for the next. */
const keptOpen = (engine: SignalEngine): SignalEngine =>
  new Proxy(engine, {
    get: (target, key) => {
      if (key === 'close') return async () => undefined;
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });

const invalid = (message: string): RpcError => new RpcError(RPC_ERRORS.INVALID_PARAMS, message);

const object = (params: Params, name: string): Params => {
  const value = params[name] ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`params.${name} must be an object`);
  return value as Params;
};

const headers = (params: Params): Record<string, string> => {
  const given = object(params, 'headers');
  for (const [name, value] of Object.entries(given))
    if (typeof value !== 'string') throw invalid(`params.headers.${name} must be a string`);
  return given as Record<string, string>;
};

export const webBridgeMethods = (deps: WebBridgeDeps): Record<string, Method> => {
  const requests = new EngineRequests(async (database) => {
    if (database !== BRIDGE_ENGINE)
      throw new TypeError(`the bridge serves one engine, "${BRIDGE_ENGINE}", not "${database}"`);
    return keptOpen(deps.engine);
  });
  const store = serveClientStore(deps.store);
  const fetch = deps.fetch ?? globalThis.fetch;

  return {
    engine: async (params) => {
      param.only(params, 'op', 'engine', 'args');
      const handle = params.engine;
      if (handle !== undefined && (typeof handle !== 'number' || !Number.isInteger(handle)))
        throw invalid('params.engine must be a whole number');
      try {
        return await requests.request(param.string(params, 'op'), handle, object(params, 'args'));
      } catch (error) {
        if (!(error instanceof EngineRequestError)) throw error;
        // The page's RemoteSignalEngine turns the failure back into the engine's own error.
        throw new RpcError(RPC_ERRORS.APPLICATION, error.message, {
          code: 'ENGINE',
          failure: error.failure,
        });
      }
    },
    store: async (params) => {
      param.only(params, 'method', 'args');
      try {
        return await store(param.string(params, 'method'), params.args);
      } catch (error) {
        if (error instanceof StoreRecordError) throw invalid(error.message);
        throw error;
      }
    },
    'signer.publicKey': async (params) => {
      param.only(params);
      return toBase64(await deps.signer.publicKey());
    },
    'signer.sign': async (params) => {
      param.only(params, 'message');
      let message: Uint8Array;
      try {
        message = fromBase64(param.string(params, 'message'));
      } catch (error) {
        if (error instanceof RpcError) throw error;
        throw invalid('params.message must be base64');
      }
      return toBase64(await deps.signer.sign(message));
    },
    'relay.fetch': async (params) => {
      param.only(params, 'url', 'method', 'headers', 'body');
      const url = param.string(params, 'url');
      if (!/^https?:\/\//.test(url)) throw invalid('params.url must be an http(s) URL');
      const body = params.body;
      if (body !== undefined && typeof body !== 'string')
        throw invalid('params.body must be a string');
      let response: Response;
      try {
        response = await fetch(url, {
          method: param.string(params, 'method'),
          headers: headers(params),
          ...(body === undefined ? {} : { body }),
          signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        });
      } catch (error) {
        // The page's core turns this into RELAY_UNREACHABLE, as a failed fetch of its own.
        throw new RpcError(
          RPC_ERRORS.APPLICATION,
          `cannot reach ${url}: ${describeNetworkError(error)}`,
          {
            code: 'RELAY_UNREACHABLE',
          },
        );
      }
      return { status: response.status, text: await response.text() };
    },
  };
};
