import { run } from './program.ts';

/** The `privcomm` command: see apps/cli/README.md for the interface (output, exit codes). */
const signals = ['SIGINT', 'SIGTERM'] as const;

// A reader that went away (`privcomm history bob | head -1`) is not an error worth a trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
});

const code = await run(process.argv.slice(2), {
  env: process.env,
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  onSignal: (handler) => {
    for (const signal of signals) process.on(signal, handler);
    return () => {
      for (const signal of signals) process.off(signal, handler);
    };
  },
});
// Sockets and timers of the client are closed by now; exit without waiting for stragglers,
// once what was written to stdout is flushed.
process.stdout.write('', () => process.exit(code));
