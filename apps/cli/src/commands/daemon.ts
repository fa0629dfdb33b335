import type { Command } from 'commander';
import { RPC_ERRORS, RpcError, Dispatcher, notification } from '../daemon/json-rpc.ts';
import { daemonMethods } from '../daemon/methods.ts';
import { serveLines, serveSocket, type Peer } from '../daemon/transports.ts';
import { UsageError } from '../errors.ts';
import { eventOutput } from '../output.ts';
import type { RunContext } from '../run-context.ts';
import { examples } from './common.ts';
import { stayConnected } from './listen.ts';

/** The web bridge's default address: loopback, on a port the system chooses (printed at start). */
const DEFAULT_BRIDGE_ADDRESS = '127.0.0.1:0';

/**
 * daemon: one long-running client for bots, driven by JSON-RPC 2.0 over stdin/stdout or a Unix
 * socket. It stays connected like `listen` (the same reconnect function), pushes every event as
 * a notification, and answers the messaging methods (daemon/methods.ts).
 */
export const addDaemonCommand = (program: Command, ctx: RunContext): void => {
  program
    .command('daemon')
    .summary('serve JSON-RPC for bots, on stdin/stdout or a Unix socket')
    .description(
      'stay connected and serve JSON-RPC 2.0, one JSON text per line: requests for the messaging commands, notifications for every event (messages, receipts, typing, calls…); on stdin/stdout, or on a Unix socket (--socket). SIGINT or SIGTERM stops it; so does the end of stdin',
    )
    .option('--socket <path>', 'serve on this Unix socket (mode 0600) instead of stdin/stdout')
    .option(
      '--web-bridge [host:port]',
      `development only: serve this profile's engine, store and login key to the app's web build, on a loopback WebSocket with a secret printed once (default ${DEFAULT_BRIDGE_ADDRESS})`,
    )
    .addHelpText(
      'after',
      '\nMethods: send, sendTyping, markRead, history, retry, listContacts, addContact,' +
        '\ndeleteMessage, setDisappearing, listGroups, groupInfo, listDevices, whoami (send, history,' +
        '\nmarkRead and retry take "group" in place of "recipient"). Notifications: the "type" of' +
        '\neach listen --json object as the method, the object as params. See apps/cli/README.md.' +
        examples(
          'privcomm daemon --socket /tmp/privcomm.sock',
          'privcomm --profile ~/.privcomm-web daemon --web-bridge 127.0.0.1:8790',
          `echo '{"jsonrpc":"2.0","id":1,"method":"send","params":{"recipient":"bob","message":"hi"}}' | privcomm daemon`,
        ),
    )
    .action(async (options: { socket?: string; webBridge?: string | true }, command: Command) => {
      if (options.webBridge !== undefined) {
        if (options.socket !== undefined)
          throw new UsageError('--web-bridge and --socket are two different daemons: give one');
        await runWebBridge(
          ctx,
          command,
          options.webBridge === true ? DEFAULT_BRIDGE_ADDRESS : options.webBridge,
        );
        return;
      }
      ctx.relay.stayingConnected = true;
      const { client, self, store, server, dir } = await ctx.openAccount(command);
      const peers = new Set<Peer>();
      const notify = (method: string, params: Record<string, unknown>) => {
        const line = notification(method, params);
        for (const peer of peers) peer.send(line);
      };
      let connected = false;

      // Events as notifications, in order (the core sends the receipts owed by itself).
      let notifying: Promise<void> = Promise.resolve();
      client.subscribe((event) => {
        if (event.type === 'disconnected') {
          connected = false;
          notify('disconnected', { code: event.code, reason: event.reason });
          return;
        }
        if (event.type === 'queue-empty') {
          connected = true;
          notifying = notifying.then(() => notify('queue-empty', {}));
          return;
        }
        notifying = notifying.then(async () => {
          const shown = eventOutput(event, await ctx.names(client, self.accountId));
          if (shown) notify(String(shown.json.type), shown.json);
        });
      });
      const expiry = setInterval(() => {
        void store.removeExpired(Date.now()).then((expired) => {
          for (const message of expired)
            notify('expired', { conversation: message.conversation, messageId: message.id });
        });
      }, 1000);

      const dispatcher = new Dispatcher(
        daemonMethods({ client, self, server, profileDir: dir, connected: () => connected }),
        (error) => {
          const described = ctx.describe(error);
          return described.code === 'USAGE'
            ? new RpcError(RPC_ERRORS.INVALID_PARAMS, described.message)
            : new RpcError(RPC_ERRORS.APPLICATION, described.message, { code: described.code });
        },
      );

      // The transport first, so that no notification (connected, queue-empty) goes unheard.
      let stopRequested = false;
      let stop = () => {
        stopRequested = true;
      };
      let closeTransport: () => Promise<void>;
      if (options.socket !== undefined) {
        const socket = await serveSocket(options.socket, dispatcher, peers).catch(
          (error: unknown) => {
            throw error;
          },
        );
        closeTransport = socket.close;
        ctx.out.status(`serving JSON-RPC on ${options.socket}; SIGINT or SIGTERM stops`);
      } else {
        const stdio: Peer = { send: (line) => ctx.io.stdout.write(`${line}\n`) };
        peers.add(stdio);
        // The end of stdin (the bot went away) stops the daemon, after the last answer.
        void serveLines(ctx.io.stdin, stdio, dispatcher).then(() => stop());
        closeTransport = async () => {
          peers.delete(stdio);
        };
        ctx.out.status('serving JSON-RPC on stdin/stdout; end of input, SIGINT or SIGTERM stops');
      }
      const connection = stayConnected(client, {
        status: (text) => ctx.out.status(text),
        describe: (error) => ctx.describe(error).message,
        connected: () => {
          connected = true;
          ctx.out.status(`connected to ${server} as device ${self.deviceId}`);
          notify('connected', { server, deviceId: self.deviceId });
        },
      });
      stop = () => connection.stop();
      if (stopRequested) stop();
      const stopSignal = ctx.io.onSignal(stop);
      try {
        await connection.done;
        await notifying;
        await client.disconnect();
      } finally {
        clearInterval(expiry);
        stopSignal();
        await closeTransport();
      }
    });
};

/**
 * `daemon --web-bridge`: no client core here (the page runs it); this process only lends the
 * profile's engine, store and login key to one page at a time, until SIGINT or SIGTERM. The
 * profile may have no account yet: the page registers or links it, as `register` would.
 */
const runWebBridge = async (ctx: RunContext, command: Command, address: string): Promise<void> => {
  // Loaded here, not at start: only this mode needs them (start-up time: see bin/privcomm.js).
  const { parseBridgeAddress, serveWebBridge } = await import('../daemon/web-bridge.ts');
  const { webBridgeMethods } = await import('../daemon/web-bridge-methods.ts');
  parseBridgeAddress(address); // Refused before the profile is opened or created.
  const profile = await ctx.open(command, true);
  const dispatcher = new Dispatcher(
    webBridgeMethods({ engine: profile.engine, store: profile.store, signer: profile.signer }),
    (error) => {
      const described = ctx.describe(error);
      return new RpcError(RPC_ERRORS.APPLICATION, described.message, { code: described.code });
    },
  );
  const bridge = await serveWebBridge(address, dispatcher);
  const page = `#bridge=${encodeURIComponent(bridge.url)}&secret=${bridge.secret}`;
  ctx.out.result(
    { type: 'web-bridge', url: bridge.url, secret: bridge.secret, profile: profile.dir },
    [
      `web bridge for the profile ${profile.dir} on ${bridge.url}`,
      `open the app's web build with this after its address (the secret is shown only now):`,
      page,
    ],
  );
  ctx.out.status('a development tool, not a way to serve the app; SIGINT or SIGTERM stops');
  await new Promise<void>((resolve) => {
    const stopSignal = ctx.io.onSignal(() => {
      stopSignal();
      resolve();
    });
  });
  await bridge.close();
};
