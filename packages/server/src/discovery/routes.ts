import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  DiscoveryEvaluateRequestSchema,
  DiscoveryEvaluateResponseSchema,
  DiscoveryLookupRequestSchema,
  DiscoveryLookupResponseSchema,
  DiscoveryStatusSchema,
  PublishDiscoveryTokenRequestSchema,
  type DiscoveryEvaluateResponse,
  type DiscoveryLookupResponse,
  type DiscoveryStatus,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { bearer, errorResponses } from '../routes/schemas.ts';
import type { Discovery } from './discovery.ts';

const bytes = (value: string): Buffer => Buffer.from(value, 'base64');
const base64 = (value: Uint8Array): string => Buffer.from(value).toString('base64');

const QUOTA_NOTE =
  'Counted per account (all its devices together) and per client address; beyond either, 429 RATE_LIMITED with Retry-After. Nothing about the request is stored or logged.';

/**
 * Phone-number discovery (docs/protocol.md, "Discovery"). `discovery` is undefined on a relay
 * without a discovery key: every route then answers 404 DISCOVERY_NOT_CONFIGURED.
 */
export const registerDiscoveryRoutes = (
  app: FastifyInstance,
  ctx: RelayContext,
  discovery: Discovery | undefined,
): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const enabled = (): Discovery => {
    if (!discovery) throw new RelayError('DISCOVERY_NOT_CONFIGURED');
    return discovery;
  };
  /**
   * Both buckets are checked before either is charged, so a refusal costs nothing: one
   * account's spent quota must not drain the address's budget for the other accounts behind it.
   */
  const charge = (
    found: Discovery,
    kind: 'evaluate' | 'lookup',
    request: FastifyRequest,
    accountId: string,
    cost: number,
  ): void => {
    const account = found.limiters[kind];
    account.check(accountId, cost);
    found.limiters.address.check(request.ip, cost);
    account.take(accountId, cost);
    found.limiters.address.take(request.ip, cost);
  };

  api.post(
    '/v1/discovery/evaluate',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'evaluateDiscovery',
        summary: 'Evaluate blinded phone numbers with the discovery key (OPRF)',
        description: `RFC 9497 OPRF, ristretto255-SHA512, base mode: each blinded element is multiplied by the relay's secret key, once per active key (the current one, and the previous one during a rotation grace period). At most 100 elements; each counts against RATE_LIMIT_DISCOVERY_EVALUATE and RATE_LIMIT_DISCOVERY_ADDRESS. ${QUOTA_NOTE}`,
        security: bearer,
        body: DiscoveryEvaluateRequestSchema,
        response: {
          200: DiscoveryEvaluateResponseSchema,
          ...errorResponses(400, 401, 404, 413, 429),
        },
      },
    },
    async (request, reply): Promise<DiscoveryEvaluateResponse> => {
      const device = await ctx.authenticateRequest(request);
      const found = enabled();
      const blinded = request.body.blinded;
      charge(found, 'evaluate', request, device.accountId, blinded.length);
      const evaluations = await found.oprf.evaluate(blinded.map(bytes));
      void reply.header('cache-control', 'no-store');
      return {
        evaluations: evaluations.map((evaluation) => ({
          keyVersion: evaluation.keyVersion,
          evaluated: evaluation.evaluated.map(base64),
        })),
      };
    },
  );

  api.post(
    '/v1/discovery/lookup',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'lookupDiscovery',
        summary: 'Which accounts published these discovery tokens',
        description: `At most 200 tokens; each counts against RATE_LIMIT_DISCOVERY_LOOKUP and RATE_LIMIT_DISCOVERY_ADDRESS. Only tokens under an active key version match. ${QUOTA_NOTE}`,
        security: bearer,
        body: DiscoveryLookupRequestSchema,
        response: {
          200: DiscoveryLookupResponseSchema,
          ...errorResponses(400, 401, 404, 413, 429),
        },
      },
    },
    async (request, reply): Promise<DiscoveryLookupResponse> => {
      const device = await ctx.authenticateRequest(request);
      const found = enabled();
      const tokens = request.body.tokens;
      charge(found, 'lookup', request, device.accountId, tokens.length);
      const unique = [...new Set(tokens)].map(bytes);
      const matches = await found.tokens.lookup(unique, found.oprf.activeVersions());
      void reply.header('cache-control', 'no-store');
      return {
        matches: matches.map((match) => ({
          token: base64(match.token),
          accountId: match.accountId,
        })),
      };
    },
  );

  api.get(
    '/v1/discovery/token',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'getDiscoveryStatus',
        summary: "The current key version and that of this account's published token",
        description:
          'Clients that published a token ask this from time to time (the CLI with each discovery command); when publishedKeyVersion is older than keyVersion the key was rotated, and they publish the token again under the new key.',
        security: bearer,
        response: { 200: DiscoveryStatusSchema, ...errorResponses(401, 404) },
      },
    },
    async (request): Promise<DiscoveryStatus> => {
      const device = await ctx.authenticateRequest(request);
      const found = enabled();
      return {
        keyVersion: found.oprf.currentVersion,
        publishedKeyVersion: await found.tokens.publishedVersion(device.accountId),
      };
    },
  );

  api.put(
    '/v1/discovery/token',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'publishDiscoveryToken',
        summary: "Publish this account's discovery token (replaces the one published before)",
        description:
          'Any device of the account may publish. keyVersion must be the current key version (else 409 DISCOVERY_KEY_ROTATED: evaluate again). The relay does not verify that the number belongs to the account.',
        security: bearer,
        body: PublishDiscoveryTokenRequestSchema,
        response: { 204: Type.Null(), ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      const found = enabled();
      if (request.body.keyVersion !== found.oprf.currentVersion) {
        throw new RelayError('DISCOVERY_KEY_ROTATED');
      }
      await found.tokens.publish(
        device.accountId,
        request.body.keyVersion,
        bytes(request.body.token),
      );
      return reply.code(204).send(null);
    },
  );

  api.delete(
    '/v1/discovery/token',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'removeDiscoveryToken',
        summary: "Remove this account's discovery token: nobody finds it by number any more",
        description: 'Succeeds also when none was published.',
        security: bearer,
        response: { 204: Type.Null(), ...errorResponses(401, 404) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      await enabled().tokens.remove(device.accountId);
      return reply.code(204).send(null);
    },
  );
};
