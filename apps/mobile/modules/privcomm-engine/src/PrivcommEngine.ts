import { requireNativeModule } from 'expo-modules-core';
import type { SignalEngine } from '@privcomm/client';
import { openRemoteEngine, parseAnswer, type EngineChannel } from '@privcomm/engine-android/remote';

/**
 * The phone's SignalEngine: every operation runs in the Kotlin engine core inside the app's
 * native code (PrivcommEngineModule), where the private keys stay; this side only carries
 * requests and answers (public keys, ciphertexts, plaintexts) and turns failures into the
 * interface's EngineError codes. The TypeScript engine over the requests is the one the JVM
 * tests run the contract suite against (packages/engine-android/src/remote-engine.ts).
 */

interface PrivcommEngineNative {
  /** One JSON request to the engine core; resolves with its JSON answer (never rejects for engine errors). */
  request(request: string): Promise<string>;
}

const native = requireNativeModule<PrivcommEngineNative>('PrivcommEngine');

let nextId = 1;

const channel: EngineChannel = async (op, engine, args) => {
  const id = nextId;
  nextId += 1;
  const answer = parseAnswer(await native.request(JSON.stringify({ id, op, engine, args })));
  if ('failure' in answer) throw answer.failure;
  return answer.result;
};

/**
 * Opens the engine over the SQLite database `name` in the app's private database folder; its
 * private records are sealed under a non-exportable Android Keystore key. The app injects the
 * result into PrivcommClient.open({ engine }) as the CLI injects the Node engine.
 */
export const openAndroidEngine = (name = 'privcomm-engine.sqlite'): Promise<SignalEngine> =>
  openRemoteEngine(channel, name);
