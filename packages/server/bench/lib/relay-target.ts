/**
 * The load generator's side of the relay's wire protocol: login (on the socket, or challenge and
 * token over HTTP), sends and acknowledgements, with opaque payloads. No client crypto: the relay
 * never sees plaintext, so encrypting would only measure the load generator.
 */
import type { KeyObject } from 'node:crypto';
import pg from 'pg';
import WebSocket from 'ws';
import { binaryFrame } from '../../src/ws/binary-frame.ts';
import { coalesceWrites } from '../../src/ws/write-coalescing.ts';
import { authKeyOf, readRelayAccounts, type BenchAccount } from './relay-accounts.ts';
import { keepAliveAgent, login, relayRequest, socketLogin } from './relay-login.ts';
import { readDurability, type Durability } from './relay-metrics.ts';
import { withLoginRetries, type Connection, type QueueTableStats, type Target } from './target.ts';

/**
 * How the load generator sends: over its socket in binary frames (`websocket`, as the client core
 * does with a relay that takes them), over its socket in JSON frames (`websocket-json`, as
 * before binary frames, and as clients without them), or one HTTP request per send (`http`, its
 * socket in JSON frames).
 */
export type SendTransport = 'http' | 'websocket' | 'websocket-json';

/**
 * How the load generator logs in: by signature on its message socket (`socket`, as the client
 * core does), or with a challenge and a token over HTTP before the socket (`http`).
 */
export type LoginKind = 'socket' | 'http';

export class RelayTarget implements Target {
  readonly name = 'privcomm';
  readonly acceptanceIsDurable = true;
  /** Each account's authentication key, imported at its first login (a millisecond each). */
  private readonly keys = new Map<number, KeyObject>();
  private accounts: BenchAccount[] = [];
  private readonly pool: pg.Pool;
  private readonly base: URL;

  constructor(
    baseUrl: string,
    databaseUrl: string,
    private readonly transport: SendTransport,
    private readonly login: LoginKind,
    /** The accounts the orchestrator created (relay-accounts.ts). */
    private readonly accountsFile: string,
    /**
     * The relay's MAX_SENDS_IN_FLIGHT (src/ws/device-socket.ts), passed in by the orchestrator:
     * importing that module here cost each load process a second of CPU.
     */
    private readonly maxSendsInFlight: number,
  ) {
    // Without it every send would go out at once and the relay would refuse the excess (429).
    if (!(maxSendsInFlight >= 1)) throw new Error('maxSendsInFlight is missing');
    this.base = new URL(baseUrl);
    this.pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  }

  /**
   * Users 0..count-1 are the run's first accounts (created in the database by the orchestrator).
   * What an earlier scenario left queued for them (a fixed-rate backlog whose sockets closed) is
   * removed first: it would arrive here as messages this run never sent.
   */
  async prepare(count: number): Promise<void> {
    const accounts = readRelayAccounts(this.accountsFile);
    if (accounts.length < count)
      throw new Error(`${count} accounts wanted, ${accounts.length} made`);
    this.accounts = accounts.slice(0, count);
    await this.pool.query('DELETE FROM envelopes WHERE account_id = ANY($1::uuid[])', [
      this.accountIds(),
    ]);
  }

  private accountIds(): string[] {
    return this.accounts.map((account) => account.accountId);
  }

  private account(index: number): BenchAccount {
    const account = this.accounts[index];
    if (!account) throw new Error(`user ${index} was not prepared`);
    return account;
  }

  private keyOf(index: number): KeyObject {
    const known = this.keys.get(index);
    if (known) return known;
    const key = authKeyOf(this.account(index));
    this.keys.set(index, key);
    return key;
  }

  /**
   * A full login. A socket the relay closed before it authenticated (its 5 s WS_AUTH_TIMEOUT_MS,
   * on a machine shared at a load of 20) or a 503 (its pool had no connection for 5 s, at 19,000
   * sessions and a load of 15) is tried again after a pause, as a client does, up to 3 times.
   */
  async connect(index: number, onMessage: (payload: Buffer) => void): Promise<Connection> {
    return withLoginRetries(
      () => this.connectOnce(index, onMessage),
      (message) => message === 'socket closed' || /^(challenge|token): 503/.test(message),
      () => (this.loginRetries += 1),
    );
  }

  /** Logins tried again (reported by the load generator). */
  loginRetries = 0;

  private async connectOnce(
    index: number,
    onMessage: (payload: Buffer) => void,
  ): Promise<Connection> {
    const me = this.account(index);
    const key = this.keyOf(index);
    const onSocket = this.login === 'socket';
    const httpToken = onSocket ? undefined : await login(this.base, { ...me, key });
    const binary = this.transport === 'websocket';
    const query = [binary && 'frames=binary', onSocket && 'login=signature'].filter(Boolean);
    const ws = new WebSocket(
      `ws://${this.base.host}/v1/websocket${query.length > 0 ? `?${query.join('&')}` : ''}`,
      { perMessageDeflate: false },
    );
    // The relay's challenge is its first frame, which can come with the upgrade's answer: listen
    // for it before the socket is open.
    const challenge = new Promise<string>((resolve, reject) => {
      if (!onSocket) return;
      ws.once('message', (data: Buffer) => {
        const nonce =
          /^\{"type":"request","id":\d+,"verb":"auth\.challenge","body":\{"nonce":"([^"]+)"/.exec(
            data.toString(),
          )?.[1];
        if (nonce) resolve(nonce);
        else reject(new Error(`the relay's first frame was not auth.challenge`));
      });
      ws.once('close', () => reject(new Error('socket closed')));
    });
    challenge.catch(() => undefined); // awaited below, once the socket is open
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    // The frames of one turn of the event loop go out in one write, as the relay writes its own
    // (and the XMPP target its stanzas): a write per frame was 43 % of this process's time online.
    const write = (frame: string | Buffer): void => {
      coalesceWrites(ws);
      ws.send(frame);
    };
    let nextId = 1;
    const waiting = new Map<
      number,
      { resolve: (body: unknown) => void; reject: (error: Error) => void }
    >();
    /** A request; with `content`, a binary frame whose body gives the content's length. */
    const request = (verb: string, body: string, content?: Buffer): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const id = nextId;
        nextId += 1;
        waiting.set(id, { resolve, reject });
        const header = `{"type":"request","id":${id},"verb":"${verb}","body":${body}}`;
        write(content === undefined ? header : binaryFrame(header, content));
      });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        // Only envelopes come binary: read the request id from the JSON part (it comes first)
        // and the payload's header from the content after it.
        const headerEnd = 2 + data.readUInt16BE(0);
        const id = Number(/"id":(\d+)/.exec(data.toString('latin1', 2, headerEnd))?.[1]);
        onMessage(data.subarray(headerEnd, headerEnd + 9));
        write(`{"type":"response","id":${id},"status":200}`);
        return;
      }
      const text = data.toString();
      // Envelopes are most frames: only their id and the payload's header are read, without a
      // full parse, so that the load generator's CPU stays small beside the relay's on 2 cores.
      if (text.startsWith('{"type":"request"') && text.includes('"verb":"envelope"')) {
        const id = Number(/"id":(\d+)/.exec(text)?.[1]);
        const at = text.indexOf('"content":"');
        if (at >= 0) onMessage(Buffer.from(text.slice(at + 11, at + 11 + 12), 'base64'));
        // The payload is "stored" (counted) before the acknowledgement, as a client must.
        write(`{"type":"response","id":${id},"status":200}`);
        return;
      }
      const frame = JSON.parse(text) as {
        type: string;
        id: number;
        status?: number;
        body?: unknown;
      };
      if (frame.type === 'response') {
        const waiter = waiting.get(frame.id);
        waiting.delete(frame.id);
        if (frame.status === 200) waiter?.resolve(frame.body);
        else waiter?.reject(new Error(`${frame.status} ${JSON.stringify(frame.body)}`));
        return;
      }
      // The challenge (taken above) is answered by `auth`, not by a response.
      if (frame.type === 'request' && (frame as { verb?: string }).verb !== 'auth.challenge')
        write(`{"type":"response","id":${frame.id},"status":200}`);
    });
    ws.on('close', () => {
      for (const waiter of waiting.values()) waiter.reject(new Error('socket closed'));
      waiting.clear();
    });
    const credentials = onSocket
      ? JSON.stringify(socketLogin(me, key, await challenge))
      : JSON.stringify({ token: httpToken });
    const authAnswer = (await request('auth', credentials)) as { frames?: string; token?: string };
    if (binary && authAnswer.frames !== 'binary') {
      throw new Error('the relay does not take binary frames: run with --transport websocket-json');
    }
    const token = httpToken ?? authAnswer.token;
    if (token === undefined) throw new Error('the relay answered a login without a token');

    // The relay answers 429 beyond maxSendsInFlight sends awaiting their commit on one
    // socket: a client keeps its own queue instead (as the client core's outbox does). The wait
    // in it counts in the message's latency, which the ledger times from the intended send.
    let sendsInFlight = 0;
    const sendQueue: (() => void)[] = [];
    const send = async (to: number, payload: Buffer): Promise<void> => {
      if (this.transport !== 'http' && sendsInFlight >= this.maxSendsInFlight) {
        await new Promise<void>((resolve) => sendQueue.push(resolve));
      }
      sendsInFlight += 1;
      try {
        await sendNow(to, payload);
      } finally {
        sendsInFlight -= 1;
        sendQueue.shift()?.();
      }
    };
    const sendNow = async (to: number, payload: Buffer): Promise<unknown> => {
      const recipient = this.account(to);
      const message = `"deviceId":${recipient.deviceId},"registrationId":${recipient.registrationId},"type":1`;
      if (binary) {
        return request(
          'message.send',
          `{"accountId":"${recipient.accountId}","messages":[{${message},"content":${payload.length}}]}`,
          payload,
        );
      }
      const messages = `{"messages":[{${message},"content":"${payload.toString('base64')}"}]}`;
      if (this.transport === 'websocket-json') {
        return request(
          'message.send',
          `{"accountId":"${recipient.accountId}",${messages.slice(1)}`,
        );
      }
      const reply = await relayRequest(
        this.base,
        'PUT',
        `/v1/messages/${recipient.accountId}`,
        messages,
        token,
      );
      if (reply.status !== 200) throw new Error(`send: ${reply.status} ${reply.body}`);
    };
    return {
      send,
      keepAlive: () => write(`{"type":"request","id":${nextId++},"verb":"ping"}`),
      close: () =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.close(1000);
        }),
    };
  }

  /**
   * Envelopes still queued for this run's accounts. Not the whole table: the accounts of earlier
   * scenarios keep what was sent to them after their sockets closed (a fixed-rate backlog), and
   * counting those read as "acknowledged rows left after a drain" (2,929 in the 2026-12-03 run).
   */
  async storedCount(): Promise<number> {
    const result = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM envelopes WHERE account_id = ANY($1::uuid[])',
      [this.accountIds()],
    );
    return result.rows[0]?.n ?? 0;
  }

  async queueTable(): Promise<QueueTableStats> {
    const result = await this.pool.query<{ dead: string; bytes: string }>(
      `SELECT n_dead_tup AS dead, pg_total_relation_size('envelopes') AS bytes
       FROM pg_stat_user_tables WHERE relname = 'envelopes'`,
    );
    const row = result.rows[0];
    return {
      rows: await this.storedCount(),
      dead: Number(row?.dead ?? 0),
      bytes: Number(row?.bytes ?? 0),
    };
  }

  durability(): Promise<Durability | undefined> {
    return readDurability(this.base.origin);
  }

  async analyzeQueue(): Promise<void> {
    await this.pool.query('ANALYZE envelopes');
  }

  /**
   * Paced as autovacuum paces itself (its cost delay and limit, 2 ms per 200 units by default),
   * which the stand-in is for. A VACUUM typed by hand runs unpaced: in the soak at 15,000/s it
   * took PostgreSQL's share of the machine for seconds, more than a production server's
   * autovacuum would (docs/benchmarks.md, item 41).
   */
  async vacuumQueue(): Promise<void> {
    const client = await this.pool.connect();
    try {
      // autovacuum_vacuum_cost_* of -1 means "as vacuum_cost_*".
      const asAutovacuum = (name: string): string =>
        `set_config('vacuum_${name}', COALESCE(NULLIF(current_setting('autovacuum_vacuum_${name}'),
           '-1'), current_setting('vacuum_${name}')), false)`;
      await client.query(`SELECT ${asAutovacuum('cost_delay')}, ${asAutovacuum('cost_limit')}`);
      await client.query('VACUUM envelopes, queue_usage');
    } finally {
      // Its settings are the session's: the connection is not reused.
      client.release(true);
    }
  }

  async close(): Promise<void> {
    keepAliveAgent.destroy();
    await this.pool.end();
  }
}
