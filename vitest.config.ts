import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
    // The Android app's tests run under jest-expo (apps/mobile/jest.config.js). The fault suite
    // owns its databases and processes (vitest.faults.config.ts); the NAT scenarios need root and
    // their network lab (`npm run test:nat`).
    exclude: [
      '**/node_modules/**',
      'apps/mobile/**',
      'packages/*/test/faults/**',
      'apps/cli/test/nat/**',
    ],
    globalSetup: [
      'packages/server/test/support/global-setup.ts',
      'apps/cli/test/support/global-setup.ts',
    ],
    // Each CLI test spawns `privcomm` several times (about 2 s each here, more under load).
    testTimeout: 90_000,
    hookTimeout: 60_000,
    // Real components on a busy 2-core CI machine: a row deleted after an ack, a socket closed
    // after a NOTIFY can take more than expect.poll's default 1 s. No test waits longer on success.
    expect: { requireAssertions: true, poll: { timeout: 5_000 } },
    pool: 'forks',
    maxWorkers: 2,
    coverage: {
      provider: 'v8',
      include: ['packages/server/src/**/*.ts'],
      // Entry points run only as child processes (main, CLIs); their logic lives in modules
      // that are covered in-process.
      exclude: ['packages/server/src/main.ts', 'packages/server/src/cli/**'],
      reporter: ['text-summary', 'json-summary'],
      thresholds: { lines: 80 },
    },
  },
});
