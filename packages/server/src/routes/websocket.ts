import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import { BINARY_FRAMES, CLOSE_CODES, type AccountId } from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { errorResponses, noCredentials, upgradeResponses } from './schemas.ts';
import { DeviceSocket } from '../ws/device-socket.ts';

export const registerWebSocketRoute = (app: FastifyInstance, ctx: RelayContext): void => {
  app.route({
    method: 'GET',
    url: '/v1/websocket',
    schema: {
      tags: ['websocket'],
      operationId: 'openMessageSocket',
      summary: 'The message socket (see docs/protocol.md)',
      description:
        'Upgrade to a WebSocket (add ?frames=binary for binary message.send and envelope frames), then send {"type":"request","id":1,"verb":"auth","body":{"token":…}} within 5 s. Queued envelopes follow as server requests; answer each with a 2xx response once stored. The socket also carries sends (verb message.send, the body of PUT /v1/messages/{accountId} with accountId in it), answered like that route. Refused with 429 before the upgrade while the client address holds WS_UNAUTHENTICATED_PER_ADDRESS sockets that have not authenticated. A plain GET answers 426.',
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
        binaryFrames: (request.query as { frames?: string }).frames === BINARY_FRAMES,
        authenticate: async (token) => {
          const device = await ctx.tokens.verify(token);
          // The device must still exist (a removed device's unexpired tokens stop working at
          // once, on every instance, as app.ts's authenticateToken checks for HTTP requests);
          // then it takes the number that orders its connections across instances, and every
          // instance hears of it: the newest socket of a device wins (repositories/devices.ts).
          const seq = await ctx.announceConnection(device.accountId, device.deviceId);
          if (seq === undefined) throw new RelayError('UNAUTHENTICATED');
          release();
          return { device, connectionSeq: seq };
        },
      });
    },
  });
};
