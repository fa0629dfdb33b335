import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  CLOSE_CODES,
  MAX_PROVISIONING_CONTENT_BYTES,
  PRIMARY_DEVICE_ID,
  ProvisioningAddressSchema,
  ProvisioningMessageRequestSchema,
  ProvisioningMessageResponseSchema,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { notifyQuery } from '../services/events.ts';
import { ProvisioningSocket, type ProvisioningRegistry } from '../ws/provisioning-socket.ts';
import { bearer, errorResponses, noCredentials, upgradeResponses } from './schemas.ts';

/**
 * Device linking transport: a socket on which a new device waits for one encrypted message, and
 * the route by which the primary device sends it. The relay stores nothing of either; addresses
 * and contents are never logged.
 */
export const registerProvisioningRoutes = (
  app: FastifyInstance,
  ctx: RelayContext,
  provisioning: ProvisioningRegistry,
): void => {
  app.route({
    method: 'GET',
    url: '/v1/provisioning',
    schema: {
      tags: ['provisioning'],
      operationId: 'openProvisioningSocket',
      summary: 'The provisioning socket of a new device (see docs/protocol.md)',
      description:
        'Upgrade to a WebSocket; no authentication. The relay sends {"type":"request","id":1,"verb":"provisioning.address","body":{"address":…}} at once, then {"type":"request","id":2,"verb":"provisioning.message","body":{"content":…}} when the primary device sends a message to that address; answer it with 2xx and the relay closes with 1000. Closed with 4408 after PROVISIONING_TIMEOUT_MS. Rate-limited per client address (4429), and refused with 429 before the upgrade while the address holds WS_UNAUTHENTICATED_PER_ADDRESS sockets that have not authenticated. A plain GET answers 426.',
      security: noCredentials,
      response: upgradeResponses,
    },
    // A plain GET (no upgrade) gets a catalogue error rather than an empty 404.
    handler: async () => {
      throw new RelayError('UPGRADE_REQUIRED');
    },
    preValidation: async (request) => {
      if (!ctx.unauthenticated.hasRoom(request.ip)) {
        throw new RelayError('RATE_LIMITED', 'too many unauthenticated sockets from this address', {
          retryAfterSeconds: 5,
        });
      }
    },
    wsHandler: (socket, request) => {
      const release = ctx.unauthenticated.admit(request.ip);
      if (!release) {
        socket.close(CLOSE_CODES.SLOW_CONSUMER, 'too many unauthenticated sockets');
        return;
      }
      socket.once('close', release);
      try {
        // Shared with registrations and device links: opening sockets is the first step of one.
        ctx.limiters.registration.take(request.ip);
      } catch {
        socket.close(CLOSE_CODES.SLOW_CONSUMER, 'rate limited');
        return;
      }
      new ProvisioningSocket(socket, {
        registry: provisioning,
        metrics: ctx.metrics,
        timeoutMs: ctx.config.provisioningTimeoutMs,
      });
    },
  });

  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.put(
    '/v1/provisioning/:address',
    {
      schema: {
        tags: ['provisioning'],
        operationId: 'sendProvisioningMessage',
        summary: 'Send the provisioning message to a new device (primary only)',
        description:
          'content is base64 of at most 4096 bytes, opaque to the relay. It is handed to whichever relay instance holds the provisioning socket of that address, and dropped if none does; nothing is stored, and 202 does not say whether anyone received it. Rate-limited per device.',
        security: bearer,
        params: Type.Object({ address: ProvisioningAddressSchema }),
        body: ProvisioningMessageRequestSchema,
        response: {
          202: ProvisioningMessageResponseSchema,
          ...errorResponses(400, 401, 403, 413, 429),
        },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      ctx.limiters.auth.take(`provisioning:${device.accountId}.${device.deviceId}`);
      if (device.deviceId !== PRIMARY_DEVICE_ID) {
        throw new RelayError('FORBIDDEN', 'only the primary device can provision devices');
      }
      const content = Buffer.from(request.body.content, 'base64');
      if (content.length > MAX_PROVISIONING_CONTENT_BYTES) {
        throw new RelayError('CONTENT_TOO_LARGE', `provisioning message: ${content.length} bytes`);
      }
      await ctx.database.pool.query(
        notifyQuery({ t: 'provision', p: request.params.address, c: content.toString('base64') }),
      );
      return reply.code(202).send({});
    },
  );
};
