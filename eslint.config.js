// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Lint, including the layering of ARCHITECTURE.md:
 * - wire: schemas and pure functions only: no Node built-ins, no I/O libraries, no other package;
 * - client: no platform I/O, only wire;
 * - engine-node: no app (the CLI and the Android app use it, not the reverse);
 * - server: never imports client, engine or app code, and inside it the direction is
 *   routes/ws → services → repositories → db (an inner layer never imports an outer one).
 */

/** What the relay never imports, at any layer. */
const relayForeign = {
  group: [
    '@privcomm/client',
    '@privcomm/client/*',
    '@privcomm/engine-*',
    '@privcomm/cli',
    '@privcomm/app',
    '**/apps/**',
  ],
  message: 'The relay never imports client, engine or app code.',
};

/**
 * The relay ships as one JavaScript bundle without node_modules (Dockerfile): no native addon.
 * Its tests may use libsignal to make real ciphertexts.
 */
const relayNative = {
  group: ['@signalapp/*'],
  message:
    'The relay bundle carries no native addon: libsignal is for its tests only (see services/multi-recipient.ts).',
};

/** A rule for one inner layer of the relay: the foreign code, and the layers outside it. */
const relayLayer = (layer, outer) => ({
  files: [`packages/server/src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          relayForeign,
          relayNative,
          {
            group: outer.map((name) => `**/${name}/**`),
            message: `The relay's direction is routes/ws → services → repositories → db: ${layer} imports none of ${outer.join(', ')}. Move what is shared down a layer.`,
          },
        ],
      },
    ],
  },
});

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      'data/**',
      'data-secrets/**',
      'coverage/**',
      // The Android engine's test toolchain (npm run test:android-engine).
      '.cache/**',
      'packages/server/dist/**',
      'packages/server/.dist-*/**',
      '**/migrations/meta/**',
      // The Android app has its own install, lint and typecheck (apps/mobile/README.md); its Expo
      // module's logic is packages/engine-android/src/remote-engine.ts, linted here.
      'apps/mobile/**',
      // The CLI's compiled output (apps/cli/scripts/build.js).
      'apps/cli/dist/**',
      'apps/cli/.dist-*/**',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['packages/wire/src/**/*.ts'],
    rules: {
      // The wire tsconfig includes Node's types for its tests; the source must not use them.
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: 'wire runs outside Node: use Uint8Array.' },
        { name: 'process', message: 'wire has no I/O.' },
        { name: 'require', message: 'wire has no I/O.' },
      ],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*'],
              message: 'wire has no I/O: it runs in Node, Hermes and browsers.',
            },
            {
              group: ['pg', 'fastify', '@fastify/*', 'ws', 'pino', 'drizzle-orm*'],
              message: 'wire has no I/O.',
            },
            { group: ['@privcomm/*'], message: 'wire depends on no other package.' },
          ],
        },
      ],
    },
  },
  {
    files: ['packages/client/src/**/*.ts'],
    ignores: ['packages/client/src/testing/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                'node:*',
                'react-native',
                'react-native-*',
                'expo',
                'expo-*',
                'ws',
                'better-sqlite3',
              ],
              message:
                'The client core does no platform I/O: inject it (engine, transport, store).',
            },
            {
              group: [
                '@privcomm/server',
                '@privcomm/server/*',
                '@privcomm/engine-*',
                '@privcomm/cli',
                '@privcomm/app',
                '**/apps/**',
              ],
              message: 'The core depends only on wire.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: 'Hermes has no Buffer: use bytes.ts.' },
        { name: 'process', message: 'The core does no platform I/O.' },
        { name: 'window', message: 'No DOM in the core.' },
        { name: 'document', message: 'No DOM in the core.' },
        { name: 'TextDecoder', message: 'Not guaranteed in Hermes: use bytes.ts.' },
        { name: 'TextEncoder', message: 'Use bytes.ts for one implementation everywhere.' },
      ],
    },
  },
  {
    // The Android app's engine runs this under Hermes (apps/mobile/modules/privcomm-engine).
    files: ['packages/engine-android/src/remote-engine.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['node:*'], message: 'This runs under Hermes too: no Node.' }] },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: 'Hermes has no Buffer: use the client core bytes helpers.' },
        { name: 'process', message: 'This runs under Hermes too.' },
      ],
    },
  },
  {
    files: ['packages/engine-node/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@privcomm/cli', '@privcomm/cli/*', '@privcomm/app', '**/apps/**'],
              message: 'engine-node serves the apps; it imports none of them.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['packages/server/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [relayForeign] }] },
  },
  {
    files: ['packages/server/src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [relayForeign, relayNative] }] },
  },
  // Later entries win for their files, so each layer repeats relayForeign.
  relayLayer('services', ['routes', 'ws']),
  relayLayer('repositories', ['routes', 'ws', 'services']),
  relayLayer('db', ['routes', 'ws', 'services', 'repositories']),
  {
    files: ['**/test/**/*.ts'],
    rules: {
      // Test clients read loosely typed JSON responses.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.js', 'vitest.config.ts', 'vitest.faults.config.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
);
