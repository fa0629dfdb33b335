import { prepareToolchain } from '../src/toolchain.ts';

/** Step one of `npm run test:android-engine`: fetch the JVM toolchain and compile the engine. */
const started = Date.now();
prepareToolchain((line) => process.stdout.write(`android-engine: ${line}\n`));
process.stdout.write(`android-engine: toolchain ready in ${Date.now() - started} ms\n`);
