// jest-expo (Android preset) with React Native Testing Library. The tests run the real client
// core, the Node SignalEngine (real libsignal) and a real relay started by globalSetup.
const path = require('node:path');
const preset = require('jest-expo/android/jest-preset.js');

/** @type {import('jest').Config} */
module.exports = {
  preset: 'jest-expo/android',
  rootDir: __dirname,
  roots: ['<rootDir>/src', '<rootDir>/test'],
  testMatch: ['**/*.test.ts', '**/*.test.tsx'],
  globalSetup: '<rootDir>/test/support/global-setup.js',
  globalTeardown: '<rootDir>/test/support/global-teardown.js',
  setupFiles: [...preset.setupFiles, '<rootDir>/test/support/quiet-act.js'],
  moduleNameMapper: {
    // libsignal's addon finds itself through import.meta.dirname; load it with Node's own
    // require, outside Jest's module registry (it is never bundled into the app).
    '^@signalapp/libsignal-client$': '<rootDir>/test/support/libsignal.js',
    '^@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage\\.js$':
      '<rootDir>/test/support/libsignal-multi-recipient.js',
  },
  // The client core, wire and the Node engine are TypeScript sources outside node_modules and
  // are transformed as usual; React Native packages in node_modules need it too.
  transformIgnorePatterns: [
    'node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|expo-.*|@noble/.*|zustand|typebox))',
  ],
  // typebox (the wire schemas) ships ES modules only, as .mjs.
  transform: {
    ...preset.transform,
    '\\.mjs$': ['babel-jest', { caller: { name: 'metro', bundler: 'metro', platform: 'android' } }],
  },
  // The repository root's node_modules holds the workspace packages (engine-node, server
  // testing harness) and their dependencies.
  // Files outside the app (packages/*) find the app's packages first (Babel's runtime helpers,
  // React Native), then the root's.
  modulePaths: [
    path.resolve(__dirname, 'node_modules'),
    path.resolve(__dirname, '../../node_modules'),
  ],
  testTimeout: 120_000,
  maxWorkers: 2,
};
