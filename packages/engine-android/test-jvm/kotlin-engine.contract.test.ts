import { afterAll, beforeAll } from 'vitest';
import { engineContract } from '@privcomm/client/testing';
import { splitMultiRecipientMessage } from '@privcomm/engine-node';
import { sealShareAtRest } from '@privcomm/server/testing';
import { KotlinBridge, openKotlinEngine } from '../src/index.ts';
import { newStoreFile } from './support.ts';

/**
 * The whole SignalEngine contract suite, unchanged, against the Kotlin engine core in one JVM
 * (libsignal-client 0.80.2 for the JVM). Without the toolchain, beforeAll fails, saying what
 * to run: no silent skip.
 */
let bridge: KotlinBridge | undefined;

beforeAll(async () => {
  bridge = await KotlinBridge.start();
});
afterAll(async () => {
  await bridge?.stop();
});

const running = (): KotlinBridge => {
  if (bridge === undefined) throw new Error('the Kotlin engine bridge did not start');
  return bridge;
};

// The relay's split (libsignal's SealedSenderMultiRecipientMessage) and its at-rest seal, for
// the group operations.
const options = { splitMultiRecipient: splitMultiRecipientMessage, sealAtRest: sealShareAtRest };
engineContract('kotlin, in memory', () => openKotlinEngine(running(), ':memory:'), options);
engineContract('kotlin, SQLite file', () => openKotlinEngine(running(), newStoreFile()), options);
