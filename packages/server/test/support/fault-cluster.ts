import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.ts';
import type { PostgresBinaries } from '../../src/db/postgres-binaries.ts';
import { report } from './fault-schedule.ts';
import { portToRestartOn, spawnRelay, type RelayProcess } from './relay.ts';
import { TcpProxy } from './tcp-proxy.ts';

/**
 * The fault suite's world on one machine: a PostgreSQL the test owns (it can stop it hard and
 * start it again), a TCP proxy between it and the relays (to cut them off), and several relay
 * processes on fixed ports (killed and restarted where their clients expect them).
 */

const exitOf = (pid: number): Promise<void> =>
  new Promise((resolve) => {
    const check = (): void => {
      try {
        process.kill(pid, 0);
        setTimeout(check, 20);
      } catch {
        resolve();
      }
    };
    check();
  });

/**
 * The PostgreSQL a fault test runs: the system's (`PRIVCOMM_FAULT_POSTGRES=system`, the default when
 * the machine has one), or the relay's embedded one from its npm package (`embedded`). The
 * system's comes with a `pg_dump` of its own version, so the privacy audit dumps the database
 * with it; Debian 12's `pg_dump` 15 refuses the embedded PostgreSQL 18.
 */
export interface FaultPostgresServer {
  readonly name: string;
  /** Undefined: the embedded PostgreSQL's. */
  readonly binaries?: PostgresBinaries;
  /** A pg_dump of the server's major version, if there is one. */
  readonly pgDump?: string;
}

/** The system's PostgreSQL whose major version matches its `pg_dump` (Debian's layout first). */
const systemPostgres = (): FaultPostgresServer | undefined => {
  const version = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' });
  const major = /\(PostgreSQL\) (\d+)/.exec(version.stdout ?? '')?.[1];
  if (version.status !== 0 || major === undefined) return undefined;
  const config = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const candidates = [`/usr/lib/postgresql/${major}/bin`, config.stdout?.trim() ?? ''];
  for (const dir of candidates.filter(Boolean)) {
    const binary = (name: string): string => path.join(dir, name);
    if (!['initdb', 'postgres', 'pg_dump'].every((name) => existsSync(binary(name)))) continue;
    const server = spawnSync(binary('postgres'), ['--version'], { encoding: 'utf8' });
    if (/\(PostgreSQL\) (\d+)/.exec(server.stdout ?? '')?.[1] !== major) continue;
    return {
      name: `system PostgreSQL ${major} (${dir})`,
      binaries: { initdb: binary('initdb'), postgres: binary('postgres') },
      pgDump: binary('pg_dump'),
    };
  }
  return undefined;
};

let chosen: FaultPostgresServer | undefined;

export const faultPostgresServer = (): FaultPostgresServer => {
  if (chosen) return chosen;
  const wanted = process.env.PRIVCOMM_FAULT_POSTGRES || 'system';
  if (wanted !== 'system' && wanted !== 'embedded') {
    throw new Error('PRIVCOMM_FAULT_POSTGRES must be system or embedded');
  }
  const system = wanted === 'system' ? systemPostgres() : undefined;
  if (wanted === 'system' && !system && process.env.PRIVCOMM_FAULT_POSTGRES === 'system') {
    throw new Error('PRIVCOMM_FAULT_POSTGRES=system, but no PostgreSQL with a matching pg_dump');
  }
  chosen = system ?? { name: 'embedded PostgreSQL (npm package), no matching pg_dump' };
  report(`[faults] database: ${chosen.name}`);
  return chosen;
};

/** A PostgreSQL in its own data directory, with its log kept for the privacy audit. */
export class OwnedPostgres {
  /** Everything the server wrote (warnings and worse, as the relay's embedded mode logs them). */
  readonly logs: string[] = [];
  /** Every port it listened on (a new one at each start). */
  readonly ports: number[] = [];
  private database: EmbeddedDatabase | undefined;

  private constructor(
    readonly dataDir: string,
    readonly server: FaultPostgresServer,
  ) {}

  /** In `dataDir` (created if need be), or in a fresh temporary directory. */
  static async start(dataDir?: string): Promise<OwnedPostgres> {
    const owned = new OwnedPostgres(
      dataDir ?? mkdtempSync(path.join(tmpdir(), 'privcomm-fault-pg-')),
      faultPostgresServer(),
    );
    await owned.start();
    return owned;
  }

  async start(): Promise<void> {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    this.database = await startEmbeddedPostgres(
      this.dataDir,
      pino({ level: 'debug' }, sink),
      this.server.binaries,
    );
    this.ports.push(this.port);
  }

  private get current(): EmbeddedDatabase {
    if (!this.database) throw new Error('PostgreSQL is not running');
    return this.database;
  }

  get port(): number {
    return Number(new URL(this.current.url).port);
  }

  /** The relay role's URL, with the host and port replaced (to go through a proxy). */
  relayUrlVia(port: number): string {
    const url = new URL(this.current.url);
    url.port = String(port);
    return url.toString();
  }

  get url(): string {
    return this.current.url;
  }

  get adminUrl(): string {
    return this.current.adminUrl;
  }

  /** The superuser's URL for another database (the relay's is `privcomm`). */
  adminUrlOf(database: string): string {
    const url = new URL(this.current.adminUrl);
    url.pathname = `/${database}`;
    return url.toString();
  }

  /**
   * Whether the postmaster is alive. PostgreSQL can stop by itself: after a PANIC its crash
   * recovery ends with a checkpoint, and if that cannot be written (a full disk) the postmaster
   * exits and waits for a supervisor.
   */
  running(): boolean {
    try {
      const pid = Number(
        readFileSync(path.join(this.dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0],
      );
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** `pg_ctl stop -m immediate`: SIGQUIT to the postmaster, no checkpoint, crash recovery next. */
  async stopImmediately(): Promise<void> {
    const pid = Number(
      readFileSync(path.join(this.dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    process.kill(pid, 'SIGQUIT');
    await exitOf(pid);
    this.database = undefined;
  }

  async stop(): Promise<void> {
    await this.database?.stop();
    this.database = undefined;
  }
}

export interface FaultClusterOptions {
  readonly relays?: number;
  /** Extra relay environment (limits, timeouts). */
  readonly env?: Record<string, string>;
  /** A data directory for PostgreSQL (the disk-full test passes one on a small tmpfs). */
  readonly dataDir?: string;
}

export class FaultCluster {
  /** Every relay process ever started, killed ones included: their logs are audited. */
  private readonly processes: RelayProcess[] = [];
  private readonly current: (RelayProcess | undefined)[];

  private constructor(
    readonly postgres: OwnedPostgres,
    readonly proxy: TcpProxy,
    private readonly ports: number[],
    private readonly env: Record<string, string>,
  ) {
    this.current = ports.map(() => undefined);
    // A test process that ends early (a hook timed out) must not leave its relays running.
    process.once('exit', () => {
      for (const relay of this.processes) relay.child.kill('SIGKILL');
    });
  }

  static async start(options: FaultClusterOptions = {}): Promise<FaultCluster> {
    const postgres = await OwnedPostgres.start(options.dataDir);
    const proxy = await TcpProxy.start(postgres.port);
    const ports: number[] = [];
    for (let i = 0; i < (options.relays ?? 3); i += 1) ports.push(await portToRestartOn());
    const cluster = new FaultCluster(postgres, proxy, ports, options.env ?? {});
    try {
      // One first, so that migrations run once; the others find the schema in place.
      await cluster.restart(0);
      await Promise.all(ports.slice(1).map((_, i) => cluster.restart(i + 1)));
    } catch (error) {
      // Nothing of a failed start may outlive the test (no afterAll sees this cluster).
      await cluster.destroy(options.dataDir === undefined);
      throw error;
    }
    return cluster;
  }

  get size(): number {
    return this.ports.length;
  }

  /** The relays' database URL: through the proxy. */
  get databaseUrl(): string {
    return this.postgres.relayUrlVia(this.proxy.port);
  }

  url(index: number): string {
    return `http://127.0.0.1:${this.ports[index]}`;
  }

  wsUrl(index: number): string {
    return `ws://127.0.0.1:${this.ports[index]}/v1/websocket`;
  }

  relay(index: number): RelayProcess | undefined {
    return this.current[index];
  }

  isUp(index: number): boolean {
    const relay = this.current[index];
    return relay !== undefined && relay.child.exitCode === null && relay.child.signalCode === null;
  }

  /** kill -9: no close, no flush, sockets cut by the kernel. */
  async kill(index: number): Promise<void> {
    const relay = this.current[index];
    this.current[index] = undefined;
    await relay?.stop('SIGKILL');
  }

  /** SIGTERM, as an orchestrator stops a relay; resolves with its exit code. */
  async terminate(index: number): Promise<number | null> {
    const relay = this.current[index];
    this.current[index] = undefined;
    return (await relay?.stop('SIGTERM')) ?? null;
  }

  async restart(index: number): Promise<void> {
    const relay = await spawnRelay(this.databaseUrl, {
      PORT: String(this.ports[index]),
      ...this.env,
    });
    this.processes.push(relay);
    this.current[index] = relay;
  }

  /** Resident memory of a relay process in bytes (Linux /proc). */
  rss(index: number): number {
    const pid = this.current[index]?.child.pid;
    if (pid === undefined) throw new Error(`relay ${index} is not running`);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return Number(kib) * 1024;
  }

  /** The servers' own endpoints (database, proxy, relays): they may be named in logs. */
  serverPorts(): number[] {
    return [...this.postgres.ports, this.proxy.port, ...this.ports];
  }

  /** Every line every relay process of this cluster wrote, and PostgreSQL's log. */
  logs(): string[] {
    return [...this.processes.flatMap((relay) => relay.logs), ...this.postgres.logs];
  }

  async stop(): Promise<void> {
    await Promise.all(this.current.map((relay) => relay?.stop('SIGTERM')));
    await this.proxy.close();
    await this.postgres.stop();
  }

  /** Stops everything and (unless told otherwise) removes PostgreSQL's data directory. */
  async destroy(removeData = true): Promise<void> {
    await Promise.all(this.processes.map((relay) => relay.stop('SIGKILL')));
    await this.stop();
    if (removeData) rmSync(this.postgres.dataDir, { recursive: true, force: true });
  }
}
