import { execFileSync } from 'node:child_process';

/**
 * A small internet in network namespaces, for the NAT tests (`npm run test:nat`, as root):
 *
 *   public segment (namespace `<prefix><run>-pub`, bridge br0, 203.0.113.0/24 — TEST-NET-3)
 *     203.0.113.2  the relay (HTTP on TCP 443)
 *     203.0.113.3  coturn (STUN/TURN on UDP and TCP 3478, TURN over TLS on TCP 443)
 *     203.0.113.1x a router per kind of NAT, each with one client host behind it on 10.x.0.2/24
 *
 * Every address lives only in the namespaces created here; nothing touches the host's own
 * network. Names carry a per-run id (the runner's pid and random hex), so a crashed run's
 * leftovers can be recognised (by PREFIX and a dead pid) and removed at the next start.
 */

export const PREFIX = 'pcnat-';

/** The kinds of router a client can sit behind (RFC 4787 terms in the comments). */
export type RouterKind = 'full-cone' | 'port-restricted' | 'symmetric' | 'tcp443-only';

export interface Router {
  readonly kind: RouterKind;
  readonly namespace: string;
  /** Its address on the public segment: what servers see as the client's address. */
  wanAddress: string;
  readonly lanSubnet: string;
  /** The client host behind it. */
  readonly host: { readonly namespace: string; readonly address: string };
}

export interface Lab {
  readonly runId: string;
  readonly publicNamespace: string;
  readonly relayAddress: string;
  readonly turnAddress: string;
  readonly routers: Readonly<Record<RouterKind, Router>>;
}

const PUBLIC_NET = '203.0.113';
const RELAY_ADDRESS = `${PUBLIC_NET}.2`;
const TURN_ADDRESS = `${PUBLIC_NET}.3`;
const ROUTER_KINDS: readonly RouterKind[] = [
  'full-cone',
  'port-restricted',
  'symmetric',
  'tcp443-only',
];
/** Stale namespaces removed at start, at most (a bound, not an expectation). */
const MAX_STALE = 64;

const run = (command: string, args: readonly string[], input?: string): string =>
  execFileSync(command, args, {
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(input === undefined ? {} : { input }),
  });

const ip = (...args: string[]): string => run('ip', args);

/** Runs `command` inside `namespace`. */
export const inNamespace = (namespace: string, command: string, ...args: string[]): string =>
  run('ip', ['netns', 'exec', namespace, command, ...args]);

const nft = (namespace: string, ruleset: string): void => {
  run('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], ruleset);
};

const sysctl = (namespace: string, setting: string): void => {
  inNamespace(namespace, 'sysctl', '-qw', setting);
};

/** The namespaces of every run, this one's and crashed ones'. */
const ourNamespaces = (): string[] =>
  ip('netns', 'list')
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(PREFIX));

/** A run id: the runner's process id (to tell a live run from a crashed one) and 4 random hex. */
export const newRunId = (pid: number, random: string): string => `${pid}x${random}`;

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes the namespaces of runs whose runner is gone (crashed or killed); a run still going
 * keeps its own. Their processes lose their interfaces with them.
 */
export const removeStaleNamespaces = (): string[] => {
  const stale = ourNamespaces()
    .filter((name) => {
      const pid = Number(/^pcnat-(\d+)x/.exec(name)?.[1]);
      return !Number.isInteger(pid) || !isAlive(pid);
    })
    .slice(0, MAX_STALE);
  for (const name of stale) ip('netns', 'delete', name);
  return stale;
};

/**
 * The NAT behaviour of each router, as nftables rules on its `wan` interface. Linux's
 * masquerade keeps the source port when it is free, so one host behind a router gets an
 * endpoint-independent mapping; what differs is filtering (who may send in) and, for the
 * symmetric NAT, a new random port for every destination.
 */
const natRules = (kind: RouterKind, host: string): string => {
  const masquerade = kind === 'symmetric' ? 'masquerade random' : 'masquerade';
  // Full cone: anyone may send to a mapped port (endpoint-independent filtering). With one host
  // and preserved ports, forwarding every inbound UDP datagram to it is exactly that.
  const fullCone = kind === 'full-cone' ? `iifname "wan" meta l4proto udp dnat to ${host}` : '';
  // The strict firewall: out only to TCP 443 (and the answers to that).
  const firewall =
    kind === 'tcp443-only'
      ? `table ip filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" tcp dport 443 accept
  }
}`
      : '';
  return `table ip nat {
  chain pre {
    type nat hook prerouting priority dstnat;
    ${fullCone}
  }
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "wan" ${masquerade}
  }
}
${firewall}
`;
};

/** Every namespace starts with loopback up and IPv6 off (the lab is IPv4 only). */
const addNamespace = (name: string): void => {
  ip('netns', 'add', name);
  ip('-n', name, 'link', 'set', 'lo', 'up');
  sysctl(name, 'net.ipv6.conf.all.disable_ipv6=1');
  sysctl(name, 'net.ipv6.conf.default.disable_ipv6=1');
};

/** Builds the lab; on any failure removes what it built and throws. */
export const createLab = (runId: string): Lab => {
  if (!/^\d{1,10}x[0-9a-f]{4}$/.test(runId)) throw new Error(`bad run id "${runId}"`);
  const name = (part: string): string => `${PREFIX}${runId}-${part}`;
  const publicNamespace = name('pub');
  try {
    addNamespace(publicNamespace);
    ip('-n', publicNamespace, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', publicNamespace, 'link', 'set', 'br0', 'up');
    for (const address of [RELAY_ADDRESS, TURN_ADDRESS])
      ip('-n', publicNamespace, 'addr', 'add', `${address}/24`, 'dev', 'br0');

    const routers = {} as Record<RouterKind, Router>;
    ROUTER_KINDS.forEach((kind, index) => {
      const number = index + 1;
      const router = name(`r${number}`);
      const host = name(`h${number}`);
      const wan = `${PUBLIC_NET}.${10 + number}`;
      const gateway = `10.${number}.0.1`;
      const address = `10.${number}.0.2`;
      addNamespace(router);
      addNamespace(host);
      // Interfaces are created inside the namespaces (never in the host's), so their short
      // names cannot collide with anything else.
      ip(
        '-n',
        router,
        'link',
        'add',
        'wan',
        'type',
        'veth',
        'peer',
        'name',
        `p${number}`,
        'netns',
        publicNamespace,
      );
      ip('-n', publicNamespace, 'link', 'set', `p${number}`, 'master', 'br0', 'up');
      ip('-n', router, 'link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
      ip('-n', router, 'addr', 'add', `${wan}/24`, 'dev', 'wan');
      ip('-n', router, 'addr', 'add', `${gateway}/24`, 'dev', 'lan');
      ip('-n', router, 'link', 'set', 'wan', 'up');
      ip('-n', router, 'link', 'set', 'lan', 'up');
      sysctl(router, 'net.ipv4.ip_forward=1');
      nft(router, natRules(kind, address));
      ip('-n', host, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', host, 'link', 'set', 'eth0', 'up');
      ip('-n', host, 'route', 'add', 'default', 'via', gateway);
      routers[kind] = {
        kind,
        namespace: router,
        wanAddress: wan,
        lanSubnet: `10.${number}.0.`,
        host: { namespace: host, address },
      };
    });
    return {
      runId,
      publicNamespace,
      relayAddress: RELAY_ADDRESS,
      turnAddress: TURN_ADDRESS,
      routers,
    };
  } catch (error) {
    removeLab(runId);
    throw error;
  }
};

/** Removes this run's namespaces (and so every interface and rule in them). */
export const removeLab = (runId: string): void => {
  for (const namespace of ourNamespaces().filter((n) => n.startsWith(`${PREFIX}${runId}-`)))
    ip('netns', 'delete', namespace);
};

/**
 * The router gets a new public address, 10 above its current one (as when a provider renumbers a
 * line, or a phone moves to another network): the old one goes, with every NAT mapping made on
 * it. Returns the new address.
 */
export const renumber = (router: Router): string => {
  const octets = router.wanAddress.split('.');
  const newAddress = [...octets.slice(0, 3), Number(octets[3]) + 10].join('.');
  ip('-n', router.namespace, 'addr', 'add', `${newAddress}/24`, 'dev', 'wan');
  ip('-n', router.namespace, 'addr', 'del', `${router.wanAddress}/24`, 'dev', 'wan');
  // Masquerade forgets the mappings made on the removed address.
  router.wanAddress = newAddress;
  return newAddress;
};
