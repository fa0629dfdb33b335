/**
 * The loopback WebSocket ceiling: what Node and `ws` alone can forward on this machine, with no
 * database, no authentication and no validation. `server` forwards each frame from socket 2p to
 * socket 2p+1 and each answer back; `client` keeps `inFlight` frames of `bytes` bytes on their way
 * per pair, like the online scenario, and prints {"mark"} lines and a {"result"} as load.ts does.
 *
 *   node ws-ceiling.mjs server            → prints {"port": n}   (compiled: lib/compile.ts)
 *   node ws-ceiling.mjs client '{"port":n,"pairs":200,"inFlight":4,"seconds":20,"bytes":1024}'
 */
import { WebSocket, WebSocketServer } from 'ws';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const server = (): void => {
  const sockets = new Map<number, WebSocket>();
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false }, () => {
    const address = wss.address();
    process.stdout.write(
      `${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`,
    );
  });
  wss.on('connection', (socket, request) => {
    const id = Number(new URL(request.url ?? '/', 'http://x').searchParams.get('id'));
    sockets.set(id, socket);
    // Senders are even, recipients odd: a frame goes to the partner, whichever way it travels.
    socket.on('message', (data, isBinary) => sockets.get(id ^ 1)?.send(data, { binary: isBinary }));
    socket.on('close', () => sockets.delete(id));
  });
  process.on('SIGTERM', () => wss.close(() => process.exit(0)));
};

const client = async (options: {
  port: number;
  pairs: number;
  inFlight: number;
  seconds: number;
  bytes: number;
}): Promise<void> => {
  const open = (id: number): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${options.port}/?id=${id}`, {
        perMessageDeflate: false,
      });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  let measuring = false;
  let running = true;
  let delivered = 0;
  const payload = Buffer.alloc(options.bytes, 7);
  const sockets: WebSocket[] = [];
  for (let pair = 0; pair < options.pairs; pair += 1) {
    const [sender, recipient] = await Promise.all([open(pair * 2), open(pair * 2 + 1)]);
    // The recipient answers each frame with a small acknowledgement, as a relay client does.
    recipient.on('message', () => {
      if (measuring) delivered += 1;
      recipient.send('ok');
    });
    // Each acknowledgement frees a slot: send the next.
    sender.on('message', () => {
      if (running) sender.send(payload);
    });
    sockets.push(sender, recipient);
  }
  for (let pair = 0; pair < options.pairs; pair += 1) {
    for (let i = 0; i < options.inFlight; i += 1) sockets[pair * 2]?.send(payload);
  }
  await sleep(2_000);
  measuring = true;
  process.stdout.write(`${JSON.stringify({ mark: 'start' })}\n`);
  const t0 = performance.now();
  await sleep(options.seconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${JSON.stringify({ mark: 'end' })}\n`);
  measuring = false;
  running = false;
  for (const socket of sockets) socket.terminate();
  process.stdout.write(
    `${JSON.stringify({ result: { rate: delivered / seconds, messages: delivered, seconds } })}\n`,
  );
};

if (process.argv[2] === 'server') server();
else
  client(JSON.parse(process.argv[3] ?? '{}')).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`ws ceiling client failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
