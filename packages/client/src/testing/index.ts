/** Test support for engine implementations; imports vitest, so never part of an app bundle. */
export {
  engineContract,
  type EngineContractOptions,
  type MultiRecipientShare,
} from './engine-contract.ts';
export { accountIdOf, deviceIdOf, randomAccountId } from './ids.ts';
// Also at '@privcomm/client/testing/store-contract', which imports no test framework (Jest).
export { storeContract, sqlStoreContract, type TestFramework } from './store-contract.ts';
