import { createHash, timingSafeEqual } from 'node:crypto';
import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { errorResponses, noCredentials } from './schemas.ts';

/** Constant-time comparison, so the metrics token cannot be guessed byte by byte. */
const sameSecret = (given: string, expected: string): boolean => {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
};

const Status = Type.Object({ status: Type.String() });

export const registerOperationRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  app.get(
    '/health',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getHealth',
        summary: 'Liveness: the process answers',
        security: noCredentials,
        response: { 200: Status },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/ready',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getReadiness',
        summary: 'Readiness: the database answers and the event listener is connected',
        security: noCredentials,
        response: { 200: Status, ...errorResponses(503) },
      },
    },
    async () => {
      try {
        await ctx.database.pool.query('SELECT 1');
      } catch {
        throw new RelayError('UNAVAILABLE', 'database unreachable');
      }
      if (!ctx.listener.listening) throw new RelayError('UNAVAILABLE', 'event listener down');
      return { status: 'ready' };
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getMetrics',
        summary: 'Prometheus metrics (no per-account labels)',
        description: 'Requires `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.',
        // Either the metrics token or nothing: it is required only when the operator set one.
        security: [{ metricsToken: [] }, {}],
        response: {
          200: {
            description: 'Prometheus text exposition format',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...errorResponses(401),
        },
      },
    },
    async (request, reply) => {
      const token = ctx.config.metricsToken;
      if (
        token !== undefined &&
        !sameSecret(request.headers.authorization ?? '', `Bearer ${token}`)
      ) {
        throw new RelayError('UNAUTHENTICATED', 'metrics token required');
      }
      return reply
        .type(ctx.metrics.registry.contentType)
        .send(await ctx.metrics.registry.metrics());
    },
  );
};
