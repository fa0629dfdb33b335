import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  KeyCountsSchema,
  PreKeyBundleResponseSchema,
  UploadKeysRequestSchema,
  type AccountId,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import {
  AccountIdParam,
  bearer,
  DeviceIdOrAllParam,
  errorResponses,
  parseDeviceId,
} from './schemas.ts';

export const registerKeyRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.put(
    '/v1/keys',
    {
      schema: {
        tags: ['keys'],
        operationId: 'uploadKeys',
        summary: "Upload the authenticated device's public prekeys",
        description:
          'Each list present and non-empty replaces all stored keys of its kind (at most 100 per list); signedPreKey and kyberLastResortPreKey replace the current ones.',
        security: bearer,
        body: UploadKeysRequestSchema,
        response: { 204: Type.Null(), ...errorResponses(400, 401, 413) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      const body = request.body;
      for (const list of [body.preKeys, body.kyberPreKeys]) {
        const ids = (list ?? []).map((key) => key.keyId);
        if (new Set(ids).size !== ids.length) {
          throw new RelayError('VALIDATION_FAILED', 'a key id appears twice in one list');
        }
      }
      await ctx.keys.upload(device.accountId, device.deviceId, body);
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/v1/keys/count',
    {
      schema: {
        tags: ['keys'],
        operationId: 'getPrekeyCount',
        summary: 'How many one-time prekeys the authenticated device has left',
        description: 'Clients refill below 50 (of 100).',
        security: bearer,
        response: { 200: KeyCountsSchema, ...errorResponses(401) },
      },
    },
    async (request) => {
      const device = await ctx.authenticateRequest(request);
      return ctx.keys.counts(device.accountId, device.deviceId);
    },
  );

  api.get(
    '/v1/keys/:accountId/:deviceId',
    {
      schema: {
        tags: ['keys'],
        operationId: 'getPrekeyBundles',
        summary: 'Fetch prekey bundles of one device, or of all devices with *',
        description:
          'Consumes one one-time EC prekey (when any is left) and one one-time Kyber prekey per device, falling back to the last-resort Kyber key. Rate-limited (429) per requesting account, per client address, and per requesting device and target device. Each target device hands out at most RATE_LIMIT_PREKEY_TARGET one-time keys; beyond that its bundle has no preKey and the last-resort Kyber key.',
        security: bearer,
        params: Type.Object({ accountId: AccountIdParam, deviceId: DeviceIdOrAllParam }),
        response: { 200: PreKeyBundleResponseSchema, ...errorResponses(400, 401, 404, 429) },
      },
    },
    async (request) => {
      const requester = await ctx.authenticateRequest(request);
      const params = request.params;
      const accountId = params.accountId as AccountId;
      const deviceId = params.deviceId === '*' ? undefined : parseDeviceId(params.deviceId);
      const identityKey = await ctx.accounts.identityKey(accountId);
      if (!identityKey) throw new RelayError('ACCOUNT_NOT_FOUND');
      const targets =
        deviceId === undefined
          ? [...(await ctx.devices.registrations(accountId)).keys()]
          : [deviceId];
      // All buckets are checked before any key is taken, so a refused request consumes nothing.
      // The requester's account and address pay one token per device bundle: throwaway
      // accounts behind one address share a budget.
      ctx.limiters.prekeyRequester.take(`account:${requester.accountId}`, targets.length);
      ctx.limiters.prekeyRequester.take(`address:${request.ip}`, targets.length);
      for (const target of targets) {
        ctx.limiters.prekeyFetch.take(
          `${requester.accountId}.${requester.deviceId}>${accountId}.${target}`,
        );
      }
      // The target's own budget of one-time keys, whoever asks. Spent, it does not refuse: the
      // bundle then carries the signed and last-resort keys only, so nobody can drain the
      // target's one-time keys, nor stop others from starting sessions with it.
      const oneTimeAllowed = new Set(
        targets.filter((target) => ctx.limiters.prekeyTarget.tryTake(`${accountId}.${target}`)),
      );
      const devices = await ctx.keys.takeBundles(accountId, deviceId, oneTimeAllowed);
      if (devices.length === 0) throw new RelayError('DEVICE_NOT_FOUND');
      return { identityKey: identityKey.toString('base64'), devices };
    },
  );
};
