import { defineConfig } from 'vitest/config';

/**
 * The NAT scenarios (`npm run test:nat`): run by run.ts inside the lab's public namespace, never
 * by `npm test` (they need root and the lab). One file, calls one after another.
 */
export default defineConfig({
  test: {
    root: new URL('../../../../', import.meta.url).pathname,
    include: ['apps/cli/test/nat/*.nat.test.ts'],
    globalSetup: [
      'packages/server/test/support/global-setup.ts',
      'apps/cli/test/support/global-setup.ts',
    ],
    testTimeout: 90_000,
    hookTimeout: 90_000,
    expect: { requireAssertions: true },
    pool: 'forks',
    maxWorkers: 1,
  },
});
