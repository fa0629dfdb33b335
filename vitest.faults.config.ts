import { defineConfig } from 'vitest/config';

/**
 * The fault, abuse and privacy suite (docs/reliability.md). Each file owns its PostgreSQL, proxy
 * and relay processes, so files run one after another and need no shared database.
 * `npm run test:faults` is the long form; `npm run test:faults:short` the CI form.
 */
export default defineConfig({
  test: {
    include: ['packages/*/test/faults/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    // Three relay processes and a PostgreSQL start in a hook: minutes on a busy machine.
    hookTimeout: 300_000,
    expect: { requireAssertions: true, poll: { timeout: 10_000 } },
    pool: 'forks',
  },
});
