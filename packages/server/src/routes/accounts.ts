import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  CreateAccountRequestSchema,
  DeviceCreatedResponseSchema,
  IdentityResponseSchema,
  PRIMARY_DEVICE_ID,
  type AccountId,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { AccountIdParam, bearer, errorResponses, noCredentials } from './schemas.ts';

export const registerAccountRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.post(
    '/v1/accounts',
    {
      schema: {
        tags: ['accounts'],
        operationId: 'createAccount',
        summary: 'Create an account with its primary device (device 1)',
        description:
          'Rate-limited per client address. With REGISTRATION=invite an inviteCode is required; one use of it is taken only if the account is created.',
        security: noCredentials,
        body: CreateAccountRequestSchema,
        response: { 200: DeviceCreatedResponseSchema, ...errorResponses(400, 403, 413, 429) },
      },
    },
    async (request) => {
      ctx.limiters.registration.take(request.ip);
      const body = request.body;
      if (ctx.config.registration === 'invite' && body.inviteCode === undefined) {
        throw new RelayError('INVITE_REQUIRED');
      }
      const invite = ctx.config.registration === 'invite' ? body.inviteCode : undefined;
      const accountId = await ctx.accounts.create(body, invite);
      return { accountId, deviceId: PRIMARY_DEVICE_ID };
    },
  );

  api.get(
    '/v1/accounts/:accountId/identity',
    {
      schema: {
        tags: ['accounts'],
        operationId: 'getIdentityKey',
        summary: "An account's identity public key",
        description:
          'Lets a client confirm that the identity key a sealed message claims for an account is the one the account registered. Consumes no prekey. Rate-limited per requesting device.',
        security: bearer,
        params: Type.Object({ accountId: AccountIdParam }),
        response: { 200: IdentityResponseSchema, ...errorResponses(400, 401, 404, 429) },
      },
    },
    async (request) => {
      const requester = await ctx.authenticateRequest(request);
      ctx.limiters.auth.take(`identity:${requester.accountId}.${requester.deviceId}`);
      const identityKey = await ctx.accounts.identityKey(request.params.accountId as AccountId);
      if (!identityKey) throw new RelayError('ACCOUNT_NOT_FOUND');
      return { identityKey: identityKey.toString('base64') };
    },
  );

  api.delete(
    '/v1/accounts/me',
    {
      schema: {
        tags: ['accounts'],
        operationId: 'deleteAccount',
        summary: 'Delete the account (primary device only)',
        description:
          'Removes keys, devices and queued envelopes, and closes the account’s sockets on every instance.',
        security: bearer,
        response: { 204: Type.Null(), ...errorResponses(401, 403) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      if (device.deviceId !== PRIMARY_DEVICE_ID) {
        throw new RelayError('FORBIDDEN', 'only the primary device can delete the account');
      }
      await ctx.accounts.delete(device.accountId);
      return reply.code(204).send(null);
    },
  );
};
