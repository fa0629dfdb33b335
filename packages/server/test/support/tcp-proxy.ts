import net from 'node:net';

/**
 * A TCP proxy between relays and their database, so that a test can take the network away the
 * two ways it goes away in production:
 * - `reset`: every connection is torn down and new ones are dropped at once (a restarted
 *   firewall, a dead load balancer): the relay sees errors immediately;
 * - `blackhole`: connections stay open but nothing passes in either direction, and new ones are
 *   accepted and never answered (a partition, a hung host): only the relay's own timeouts notice.
 * `restore` lets traffic through again; in a blackhole, held bytes then flow as TCP would resend
 * them. The upstream port can change while the proxy runs (a restarted database on a new port).
 */
export type ProxyCut = 'reset' | 'blackhole';

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private cut: ProxyCut | undefined;
  /** Connections accepted during a blackhole: connected to the database once it is restored. */
  private held: net.Socket[] = [];

  private constructor(private upstreamPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(upstreamPort: number): Promise<TcpProxy> {
    const proxy = new TcpProxy(upstreamPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    const address = this.server.address();
    if (typeof address !== 'object' || !address) throw new Error('proxy is not listening');
    return address.port;
  }

  /** Points new connections at another port (the database restarted elsewhere). */
  setUpstream(port: number): void {
    this.upstreamPort = port;
  }

  get connections(): number {
    return this.pairs.size;
  }

  cutOff(mode: ProxyCut): void {
    this.cut = mode;
    for (const pair of this.pairs) {
      if (mode === 'reset') {
        pair.client.destroy();
        pair.upstream.destroy();
      } else {
        pair.client.pause();
        pair.upstream.pause();
      }
    }
    if (mode === 'reset') this.pairs.clear();
  }

  restore(): void {
    this.cut = undefined;
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
    const held = this.held;
    this.held = [];
    for (const client of held) if (!client.destroyed) this.connect(client);
  }

  private accept(client: net.Socket): void {
    client.on('error', () => client.destroy());
    if (this.cut === 'reset') {
      client.destroy();
      return;
    }
    if (this.cut === 'blackhole') {
      client.pause();
      this.held.push(client);
      return;
    }
    this.connect(client);
  }

  private connect(client: net.Socket): void {
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', drop);
    upstream.on('close', drop);
    client.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  async close(): Promise<void> {
    this.cutOff('reset');
    for (const client of this.held) client.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
