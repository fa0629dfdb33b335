import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  openRemoteEngine,
  parseAnswer,
  type RemoteEngine,
  type RemoteEngineOptions,
} from './remote-engine.ts';
import { BRIDGE_MAIN, locateToolchain, type Toolchain } from './toolchain.ts';

/**
 * One JVM running kotlin/jvm/BridgeMain.kt, spoken to in JSON lines (the engine's requests,
 * kotlin/core/EngineRequests.kt, one per line): many engines share it, and a
 * test file keeps it for all its tests (the JVM and libsignal's native library take seconds to
 * start). FOR TESTS: a phone runs the same Kotlin core inside the app, through the Expo module.
 */

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export class KotlinBridge {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stderr = '';
  private exited: Error | undefined;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    /** The libsignal version the JVM runs. */
    readonly libsignalVersion: string,
  ) {}

  /** Starts the JVM; resolves once it has loaded libsignal and says it is ready. */
  static async start(toolchain: Toolchain = locateToolchain()): Promise<KotlinBridge> {
    const child = spawn('java', ['-cp', toolchain.classpath, BRIDGE_MAIN], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    const collect = (chunk: string): void => {
      stderr = (stderr + chunk).slice(-4000);
    };
    child.stderr.on('data', collect);
    const lines = createInterface({ input: child.stdout });
    const ready = await new Promise<{ libsignal: string }>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) =>
        reject(
          new Error(`the Kotlin engine's JVM exited (${code}) before it was ready: ${stderr}`),
        ),
      );
      lines.once('line', (line) => resolve(JSON.parse(line) as { libsignal: string }));
    });
    child.removeAllListeners('exit');
    child.removeAllListeners('error');
    child.stderr.off('data', collect);
    const bridge = new KotlinBridge(child, ready.libsignal);
    bridge.stderr = stderr;
    child.stderr.on('data', (chunk: string) => {
      bridge.stderr = (bridge.stderr + chunk).slice(-4000);
    });
    lines.on('line', (line) => bridge.answer(line));
    child.once('exit', (code, signal) => bridge.fail(code, signal));
    return bridge;
  }

  private answer(line: string): void {
    const answer = parseAnswer(line);
    const pending = this.pending.get(answer.id);
    if (pending === undefined) return;
    this.pending.delete(answer.id);
    if ('failure' in answer) pending.reject(answer.failure);
    else pending.resolve(answer.result);
  }

  private fail(code: number | null, signal: NodeJS.Signals | null): void {
    this.exited = new Error(
      `the Kotlin engine's JVM exited (${code ?? signal}); its last output: ${this.stderr}`,
    );
    for (const pending of this.pending.values()) pending.reject(this.exited);
    this.pending.clear();
  }

  /** Sends one request and resolves with its result: an EngineChannel. */
  readonly request = (
    op: string,
    engine?: number,
    args?: Record<string, unknown>,
  ): Promise<unknown> => {
    if (this.exited !== undefined) return Promise.reject(this.exited);
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id, op, engine, args })}\n`);
    });
  };

  /** Closes the JVM's input and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.exited !== undefined) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    await exited;
  }
}

/**
 * Opens a Kotlin engine in `bridge`'s JVM over the SQLite file `file` (':memory:' for a
 * throwaway store). Its private records are sealed by the bridge's test-only sealer.
 */
export const openKotlinEngine = (
  bridge: KotlinBridge,
  file: string,
  options: RemoteEngineOptions = {},
): Promise<RemoteEngine> => openRemoteEngine(bridge.request, file, options);
