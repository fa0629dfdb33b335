#!/usr/bin/env node
// The `privcomm` command. Runs the TypeScript sources through tsx, so that `npx privcomm`
// works right after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
