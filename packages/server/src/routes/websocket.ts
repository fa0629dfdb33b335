import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import {
  BINARY_FRAMES,
  CLOSE_CODES,
  SOCKET_LOGIN,
  socketAuthMessage,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import { decodeCanonicalBase64 } from '../canonical-base64.ts';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { errorResponses, noCredentials, upgradeResponses } from './schemas.ts';
import { verifyLoginSignature, type AuthenticatedDevice } from '../services/tokens.ts';
import { DeviceSocket, type SocketCredentials } from '../ws/device-socket.ts';

export const registerWebSocketRoute = (app: FastifyInstance, ctx: RelayContext): void => {
  /**
   * A login by signature, as POST /v1/auth/token checks one (rate-limited per address, never per
   * device), over the nonce only this socket was sent: no challenge to seal or use up.
   */
  const verifySignature = async (
    ip: string,
    credentials: Extract<SocketCredentials, { signature: string }>,
  ): Promise<AuthenticatedDevice> => {
    ctx.limiters.login.take(ip);
    const { accountId, deviceId, nonce } = credentials;
    const signature = decodeCanonicalBase64(credentials.signature);
    const authKey = await ctx.authKeyOf(accountId, deviceId);
    const message = socketAuthMessage(accountId, deviceId, nonce);
    if (!authKey || signature?.length !== 64 || !verifyLoginSignature(authKey, message, signature))
      throw new RelayError('UNAUTHENTICATED');
    return { accountId: accountId as AccountId, deviceId: deviceId as DeviceId };
  };

  app.route({
    method: 'GET',
    url: '/v1/websocket',
    schema: {
      tags: ['websocket'],
      operationId: 'openMessageSocket',
      summary: 'The message socket (see docs/protocol.md)',
      description:
        'Upgrade to a WebSocket (add ?frames=binary for binary message.send and envelope frames), then send {"type":"request","id":1,"verb":"auth","body":{"token":…}} within 5 s; or add login=signature, and answer the first frame, auth.challenge {nonce}, with auth {accountId, deviceId, signature} (Ed25519 over "privcomm-socket-auth-v1:<accountId>:<deviceId>:" || nonce): its answer carries a device token too. Logins by signature are rate-limited per client address. Queued envelopes follow as server requests; answer each with a 2xx response once stored. The socket also carries sends (verb message.send, the body of PUT /v1/messages/{accountId} with accountId in it), answered like that route. Refused with 429 before the upgrade while the client address holds WS_UNAUTHENTICATED_PER_ADDRESS sockets that have not authenticated. A plain GET answers 426.',
      // The device token is sent inside the socket, not with the upgrade request.
      security: noCredentials,
      querystring: Type.Object(
        {
          frames: Type.Optional(
            Type.Literal(BINARY_FRAMES, {
              description:
                'binary: message.send and envelope frames may carry their contents as bytes (docs/protocol.md, "Binary frames"); the answer to auth then says frames: binary.',
            }),
          ),
          login: Type.Optional(
            Type.Literal(SOCKET_LOGIN, {
              description:
                'signature: the relay sends auth.challenge first, and auth may carry a signature over its nonce instead of a token; the answer then carries a device token for HTTP requests (docs/protocol.md, "Login on the socket").',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      response: { ...upgradeResponses, ...errorResponses(400) },
    },
    // Refused before the upgrade when this address already holds its share of sockets that have
    // not authenticated.
    preValidation: async (request) => {
      if (!ctx.unauthenticated.hasRoom(request.ip)) {
        throw new RelayError('RATE_LIMITED', 'too many unauthenticated sockets from this address', {
          retryAfterSeconds: Math.ceil(ctx.config.ws.authTimeoutMs / 1000),
        });
      }
    },
    // A plain GET (no upgrade) gets a catalogue error rather than an empty 404.
    handler: async () => {
      throw new RelayError('UPGRADE_REQUIRED');
    },
    wsHandler: (socket, request) => {
      const query = request.query as { frames?: string; login?: string };
      const release = ctx.unauthenticated.admit(request.ip);
      if (!release) {
        socket.close(CLOSE_CODES.SLOW_CONSUMER, 'too many unauthenticated sockets');
        return;
      }
      socket.once('close', release);
      new DeviceSocket(socket, {
        config: ctx.config.ws,
        log: ctx.log,
        metrics: ctx.metrics,
        registry: ctx.registry,
        readQueue: ctx.readQueue,
        acks: ctx.acks,
        send: (device, request) => ctx.sender.send(device, request.accountId as AccountId, request),
        sendBytes: (device, request, contents) =>
          ctx.sender.sendBytes(device, request.accountId as AccountId, request, contents),
        binaryFrames: query.frames === BINARY_FRAMES,
        signatureLogin: query.login === SOCKET_LOGIN,
        authenticate: async (credentials) => {
          const device =
            'token' in credentials
              ? await ctx.tokens.verify(credentials.token)
              : await verifySignature(request.ip, credentials);
          // The device must still exist (a removed device's unexpired tokens stop working at
          // once, on every instance, as app.ts's authenticateToken checks for HTTP requests);
          // then it takes the number that orders its connections across instances, and every
          // instance hears of it: the newest socket of a device wins (repositories/devices.ts).
          const seq = await ctx.announceConnection(device.accountId, device.deviceId);
          if (seq === undefined) throw new RelayError('UNAUTHENTICATED');
          release();
          if ('token' in credentials) return { device, connectionSeq: seq };
          return { device, connectionSeq: seq, token: await ctx.tokens.issue(device) };
        },
      });
    },
  });
};
