import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/store.ts';
import { storeContract } from '../src/testing/store-contract.ts';

// The reference: every other ClientStore runs the same contract (apps/cli, apps/mobile).
storeContract('MemoryStore', async () => ({ store: new MemoryStore(), close: async () => {} }), {
  describe,
  it,
  expect,
});
