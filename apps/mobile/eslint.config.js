// @ts-check
// The app's own lint (the root's ignores apps/mobile: it has its own install).
const eslint = require('@eslint/js');
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist-android/**',
      'dist-web/**',
      'android/**',
      '.expo/**',
      'modules/**',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'error',
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@react-native-async-storage/*', '**/async-storage', '**/AsyncStorage'],
              message:
                'Nothing goes to AsyncStorage (unencrypted): secrets go to expo-secure-store, data to the SQLite store.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts', 'src/**/*.tsx'],
    ignores: ['src/platform/device.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@react-native-async-storage/*', '**/async-storage', '**/AsyncStorage'],
              message:
                'Nothing goes to AsyncStorage (unencrypted): secrets go to expo-secure-store, data to the SQLite store.',
            },
            {
              group: [
                'react-native-webrtc',
                'expo-sqlite',
                'expo-secure-store',
                'expo-crypto',
                'expo-camera',
                'react-native-incall-manager',
              ],
              message:
                'Native modules are reached only through src/platform/device.ts and injected (DevicePlatform), so the app is testable.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
        __filename: 'readonly',
        process: 'readonly',
        globalThis: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
