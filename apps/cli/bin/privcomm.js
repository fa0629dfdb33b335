#!/usr/bin/env node
// The `privcomm` command. Runs the compiled CLI in dist/ when it is up to date, else the
// TypeScript sources through tsx.
//
// Why: compiling the sources at every start costs about 2 s, which bots and scripts that call
// privcomm in a loop would pay each time; dist/ starts in about 0.1 s. It is built by `npm ci` /
// `npm install` (the root package's `prepare` script runs apps/cli/scripts/build.js), so no
// set-up step is needed. A developer who edits a source gets the sources (slow, never stale)
// until `npm run build:cli` (or the next `npm install`) compiles them again.
import { pathToFileURL } from 'node:url';
import { BUILT_ENTRY, isBuildFresh } from '../scripts/build-state.js';

if (isBuildFresh()) {
  await import(pathToFileURL(BUILT_ENTRY).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
