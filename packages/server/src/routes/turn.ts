import { createHmac, randomBytes } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { TurnCredentialsSchema, type TurnCredentials } from '@privcomm/wire';
import type { TurnConfig } from '../config.ts';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { bearer, errorResponses } from './schemas.ts';

/**
 * Credentials in the form of coturn's TURN REST API (`use-auth-secret`): the username is
 * `<expiry>:<opaque id>` and the password base64(HMAC-SHA1(secret, username)). coturn recomputes
 * the password from its copy of the secret and refuses an allocation after the expiry. The opaque
 * id is random, never the account or device id: coturn logs usernames, and its logs must not say
 * who calls. Nothing is stored, and neither username nor password is logged here.
 */
export const turnCredentials = (turn: TurnConfig, nowMs: number = Date.now()): TurnCredentials => {
  const expiry = Math.floor(nowMs / 1000) + turn.ttlSeconds;
  const username = `${expiry}:${randomBytes(16).toString('base64url')}`;
  const password = createHmac('sha1', turn.secret).update(username).digest('base64');
  return { urls: [...turn.urls], username, password, ttlSeconds: turn.ttlSeconds };
};

export const registerTurnRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/v1/turn',
    {
      schema: {
        tags: ['calls'],
        operationId: 'getTurnCredentials',
        summary: 'TURN credentials for a call',
        description:
          "Fetch at call setup. username is `<unix expiry seconds>:<random opaque id>` and password base64(HMAC-SHA1(secret, username)), as coturn's use-auth-secret expects; valid for ttlSeconds (TURN_TTL_SECONDS). Rate-limited per account (RATE_LIMIT_TURN, all its devices together). 404 TURN_NOT_CONFIGURED when the relay has no TURN_URLS.",
        security: bearer,
        response: { 200: TurnCredentialsSchema, ...errorResponses(401, 404, 429) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      // Per account, not per device: each credential may hold coturn's user-quota allocations,
      // so what one account can take is bounded only if its devices share one budget.
      ctx.limiters.turn.take(device.accountId);
      const turn = ctx.config.turn;
      if (!turn) throw new RelayError('TURN_NOT_CONFIGURED');
      // Credentials: no cache may keep them.
      void reply.header('cache-control', 'no-store');
      return turnCredentials(turn);
    },
  );
};
