import type { FastifyInstance } from 'fastify';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { noCredentials, upgradeResponses } from './schemas.ts';
import { notifyQuery } from '../services/events.ts';
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
        'Upgrade to a WebSocket, then send {"type":"request","id":1,"verb":"auth","body":{"token":…}} within 5 s. Queued envelopes follow as server requests; answer each with a 2xx response once stored. A plain GET answers 426.',
      // The device token is sent inside the socket, not with the upgrade request.
      security: noCredentials,
      response: upgradeResponses,
    },
    // A plain GET (no upgrade) gets a catalogue error rather than an empty 404.
    handler: async () => {
      throw new RelayError('UPGRADE_REQUIRED');
    },
    wsHandler: (socket) => {
      new DeviceSocket(socket, {
        config: ctx.config.ws,
        log: ctx.log,
        metrics: ctx.metrics,
        registry: ctx.registry,
        envelopes: ctx.envelopes,
        acks: ctx.acks,
        authenticate: (token) => ctx.authenticateToken(token),
        announce: async (device) => {
          // The sequence orders connections across instances: the newest socket of a device
          // wins, whichever instance it reached, and older ones close with 4409.
          const result = await ctx.database.pool.query<{ seq: string }>(
            "SELECT nextval('connection_seq') AS seq",
          );
          const seq = Number(result.rows[0]?.seq);
          await ctx.database.pool.query(
            notifyQuery({ t: 'connected', a: device.accountId, d: device.deviceId, s: seq }),
          );
          return seq;
        },
      });
    },
  });
};
