import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The Kotlin engine's tests, run by `npm run test:android-engine` only: they need the JVM
 * toolchain that command prepares, so the quick start's `npm test` leaves them out (its include
 * is packages/<name>/test/, and these live in test-jvm/). They never skip: without the
 * toolchain they fail, saying what to run.
 */
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['packages/engine-android/test-jvm/**/*.test.ts'],
    globalSetup: ['packages/server/test/support/global-setup.ts'],
    testTimeout: 90_000,
    hookTimeout: 90_000,
    expect: { requireAssertions: true, poll: { timeout: 5_000 } },
    pool: 'forks',
    maxWorkers: 2,
  },
});
