// Metro sees the client core and wire format through file: links to ../../packages, and their
// own dependencies (typebox) in the repository's root node_modules (installed by `npm ci` at the
// root first). Both folders are watched; the app's node_modules stays first in resolution so
// React and React Native exist exactly once.
const path = require('node:path');
const { getDefaultConfig } = require('expo/metro-config');

const appRoot = __dirname;
const repoRoot = path.resolve(appRoot, '../..');

const config = getDefaultConfig(appRoot);
config.watchFolders = [path.join(repoRoot, 'packages'), path.join(repoRoot, 'node_modules')];
config.resolver.nodeModulesPaths = [
  path.join(appRoot, 'node_modules'),
  path.join(repoRoot, 'node_modules'),
];
module.exports = config;
