/** Test support for engine implementations; imports vitest, so never part of an app bundle. */
export { engineContract } from './engine-contract.ts';
export { accountIdOf, deviceIdOf, randomAccountId } from './ids.ts';
