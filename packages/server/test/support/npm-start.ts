import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root, where `npm start` runs. */
export const REPOSITORY = fileURLToPath(new URL('../../../..', import.meta.url));

export interface NpmStart {
  readonly npm: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything npm and the relay printed so far, stdout and stderr. */
  readonly output: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `npm start` as a user runs it, from the repository root, in its own process group (as a
 * terminal gives a foreground job), with PATH, HOME, PORT=0 and `env`; resolves once the relay
 * logs that it listens.
 */
export const npmStart = async (env: Record<string, string>): Promise<NpmStart> => {
  const npm = spawn('npm', ['start'], {
    cwd: REPOSITORY,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/',
      PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const output: string[] = [];
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    npm.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output.push(chunk.toString('utf8'));
      const match = /"port":(\d+)[^\n]*"msg":"relay listening"/.exec(output.join(''));
      if (match) resolve(Number(match[1]));
    };
    npm.stdout?.on('data', onData);
    npm.stderr?.on('data', onData);
    void exit.then(() => reject(new Error(`npm start ended:\n${output.join('')}`)));
  });
  return { npm, port, url: `http://127.0.0.1:${port}`, output, exit };
};
