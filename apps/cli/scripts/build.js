// Compiles the CLI (its TypeScript and that of the workspace packages it uses) into dist/, one
// JavaScript bundle that Node starts in a fraction of the time tsx takes to compile the sources
// at every start. Run by the root package's `prepare` script, so `npm ci` / `npm install` build
// it with no extra step; bin/privcomm.js falls back to the sources when they are newer.
// Plain JavaScript on purpose: it runs before anything is compiled.
import { chmodSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');

// Native addons (and ws's optional native helpers) stay in node_modules, loaded from there.
const external = [
  '@signalapp/libsignal-client',
  '@roamhq/wrtc',
  'better-sqlite3',
  'ws',
  'bufferutil',
  'utf-8-validate',
];

/**
 * engine-node's modules only define things. Saying so lets the bundler leave out what a chunk
 * does not use: above all, the static chunk takes WavError and the audio helpers without
 * node-engine.ts, whose import of libsignal would load the native library for `--help` too.
 */
const engineNodeSrc = path.resolve(root, '../../packages/engine-node/src') + path.sep;
const sideEffectFreeEngine = {
  name: 'side-effect-free-engine-node',
  setup(builder) {
    builder.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === 'inner') return undefined;
      const resolved = await builder.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: 'inner',
      });
      if (resolved.errors.length > 0 || !resolved.path.startsWith(engineNodeSrc)) return resolved;
      return { ...resolved, sideEffects: false };
    });
  },
};

// Built next to dist/ and swapped in at the end, so that a `privcomm` started meanwhile never
// sees half a build.
const staging = mkdtempSync(path.join(root, '.dist-'));
try {
  await build({
    entryPoints: [path.join(root, 'src/main.ts')],
    outdir: staging,
    bundle: true,
    // Separate chunks for what is imported on demand (the profile, with SQLite and libsignal),
    // so that `privcomm --help` loads none of it.
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.19',
    external,
    // Bundled CommonJS (commander) calls require(): give the ES module one.
    banner: {
      js: "import { createRequire as __privcommRequire } from 'node:module'; const require = __privcommRequire(import.meta.url);",
    },
    plugins: [sideEffectFreeEngine],
    logLevel: 'warning',
  });
  chmodSync(staging, 0o755);
  rmSync(dist, { recursive: true, force: true });
  renameSync(staging, dist);
} finally {
  rmSync(staging, { recursive: true, force: true });
}
