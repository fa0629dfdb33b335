// Whether the compiled CLI (dist/) is at least as new as every source it was built from.
// Shared by bin/privcomm.js (which runs dist/ only when it is) and the tests' global setup
// (which builds it when it is not). Plain JavaScript: it runs before anything is compiled.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cliRoot = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** The sources bundled into dist/: the CLI's and the workspace packages it imports. */
export const SOURCE_DIRS = [
  path.join(cliRoot, 'src'),
  path.resolve(cliRoot, '../../packages/client/src'),
  path.resolve(cliRoot, '../../packages/engine-node/src'),
  path.resolve(cliRoot, '../../packages/wire/src'),
];

export const BUILT_ENTRY = path.join(cliRoot, 'dist', 'main.js');

const newestIn = (dir) => {
  let newest = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const mtime = statSync(path.join(entry.parentPath ?? entry.path, entry.name)).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
};

/** True if `entry` exists and no file under `dirs` changed after it was written. */
export const isBuildFresh = (entry = BUILT_ENTRY, dirs = SOURCE_DIRS) => {
  let built;
  try {
    built = statSync(entry).mtimeMs;
  } catch {
    return false;
  }
  try {
    return dirs.every((dir) => newestIn(dir) <= built);
  } catch {
    // A source folder that cannot be read: not a build to trust.
    return false;
  }
};
