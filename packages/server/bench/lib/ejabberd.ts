/**
 * ejabberd from Debian's packages, configured for the benchmark: loopback only, its own config,
 * spool and logs in a temporary directory, its own Erlang node name, a PostgreSQL database for
 * everything (users pre-created, offline storage on), no traffic shaping. Stopped afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findProcesses, runCommand as run } from './proc.ts';
import { XMPP_DOMAIN, XMPP_PASSWORD, xmppUser } from './xmpp-target.ts';

const EJABBERDCTL = '/usr/sbin/ejabberdctl';
const SCHEMA = '/usr/share/ejabberd/sql/pg.sql';
/** ejabberd itself, and the Erlang PostgreSQL driver its SQL backend needs. */
const PACKAGES = ['ejabberd', 'erlang-p1-pgsql'];

/** Installs the Debian packages if they are missing (needs root and apt-get). */
export const ensureEjabberdInstalled = (log: (line: string) => void): void => {
  const missing = PACKAGES.filter(
    (name) =>
      spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' }).stdout !==
      'install ok installed',
  );
  if (missing.length === 0) return;
  log(`installing ${missing.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
    stdio: 'ignore',
    env,
  });
  // Debian starts the packaged service on install: the benchmark runs its own instance only.
  spawnSync('systemctl', ['disable', '--now', 'ejabberd'], { stdio: 'ignore' });
};

export interface Ejabberd {
  readonly port: number;
  /** The beam.smp process: its CPU and memory are ejabberd's. */
  readonly pid: number;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const config = (
  port: number,
  database: URL,
  poolSize: number,
): string => `# Written by the privcomm benchmark.
hosts: [${XMPP_DOMAIN}]
loglevel: warning
log_rotate_count: 0
listen:
  - port: ${port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    # The default accept backlog (5) resets logins that arrive together.
    backlog: 1024
    shaper: none
    access: all
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
shaper_rules:
  max_user_offline_messages: 1000000
  max_user_sessions: 10
sql_type: pgsql
sql_server: "${database.hostname}"
sql_port: ${database.port || 5432}
sql_database: "${database.pathname.slice(1)}"
sql_username: "${decodeURIComponent(database.username)}"
sql_password: "${decodeURIComponent(database.password)}"
sql_pool_size: ${poolSize}
default_db: sql
auth_method: sql
auth_password_format: plain
new_sql_schema: false
modules:
  mod_offline:
    db_type: sql
    access_max_user_messages: max_user_offline_messages
`;

/**
 * Loads ejabberd's schema into `databaseUrl` (an empty database), creates `users` users, and
 * starts ejabberd on `port`.
 */
export const startEjabberd = async (options: {
  databaseUrl: string;
  port: number;
  users: number;
  /** Same as the relay's pool, so both servers get the same number of database connections. */
  poolSize: number;
}): Promise<Ejabberd> => {
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  try {
    await client.query(readFileSync(SCHEMA, 'utf8'));
    await client.query(
      `INSERT INTO users (username, password) SELECT 'u' || g, $1 FROM generate_series(0, $2::int - 1) AS g`,
      [XMPP_PASSWORD, options.users],
    );
    if (xmppUser(0) !== 'u0') throw new Error('user names out of step with xmpp-target');
  } finally {
    await client.end();
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-bench-ejabberd-'));
  chmodSync(dir, 0o755);
  for (const sub of ['spool', 'logs']) mkdirSync(path.join(dir, sub));
  const node = `privcommbench${process.pid}@localhost`;
  writeFileSync(
    path.join(dir, 'ejabberd.yml'),
    config(options.port, new URL(options.databaseUrl), options.poolSize),
  );
  // Ports (sockets) the Erlang VM may open: above the 20,000 idle sessions of scenario 4.
  writeFileSync(path.join(dir, 'ejabberdctl.cfg'), `ERLANG_NODE=${node}\nERL_MAX_PORTS=65536\n`);
  writeFileSync(path.join(dir, 'inetrc'), '');
  // The node runs as the ejabberd user, which must own its directories.
  await run('chown', ['-R', 'ejabberd', dir]);
  const id = async (flag: string): Promise<number> =>
    Number((await run('id', [flag, 'ejabberd'])).stdout);
  const [uid, gid] = [await id('-u'), await id('-g')];
  const home = (await run('getent', ['passwd', 'ejabberd'])).stdout.split(':')[5];
  // ejabberdctl, started as root, runs the node through `su ejabberd`, whose PAM limits give it
  // 1,024 open files: scenario 4 then failed with "Failed TCP accept: too many open files" in
  // ejabberd's log ("features: stream closed" / "timed out" in the load generator). Started as the
  // ejabberd user directly, it keeps this process's limit, as the relay does.
  const ctl = (...args: string[]) =>
    run(
      EJABBERDCTL,
      [
        '--config-dir',
        dir,
        '--config',
        path.join(dir, 'ejabberd.yml'),
        '--spool',
        path.join(dir, 'spool'),
        '--logs',
        path.join(dir, 'logs'),
        ...args,
      ],
      { cwd: dir, env: { ...process.env, HOME: home }, uid, gid },
    );
  const started = await ctl('start');
  if (started.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`ejabberdctl start failed: ${started.stderr}${started.stdout}`);
  }
  let pid = 0;
  const stop = async (): Promise<void> => {
    await ctl('stop');
    if (pid !== 0) {
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i += 1) await sleep(100);
      if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 300; i += 1) {
      const status = await ctl('status');
      if (status.status === 0 && status.stdout.includes('is running')) break;
      await sleep(200);
    }
    pid = findBeam(node);
    // Above this process's limit (20,000 here, for 20,000 sessions) where that is allowed
    // (CAP_SYS_RESOURCE); otherwise it keeps the limit it inherited.
    await run('prlimit', ['--pid', String(pid), '--nofile=65536:65536']);
    return { port: options.port, pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
};

/** The beam.smp process running `node` (its command line names the node). */
const findBeam = (node: string): number => {
  const beam = findProcesses(
    (cmdline) => cmdline.includes('beam') && cmdline.includes(` ${node} `),
  )[0];
  if (beam === undefined) throw new Error(`ejabberd node ${node} not found`);
  return beam;
};
