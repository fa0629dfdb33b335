import { randomBytes } from 'node:crypto';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  DeviceCreatedResponseSchema,
  DeviceListResponseSchema,
  LinkDeviceRequestSchema,
  LinkTokenResponseSchema,
  PRIMARY_DEVICE_ID,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { bearer, DeviceIdParam, errorResponses, noCredentials, parseDeviceId } from './schemas.ts';

const LINK_TOKEN_LIFETIME_MS = 10 * 60 * 1000;

export const registerDeviceRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/v1/devices',
    {
      schema: {
        tags: ['devices'],
        operationId: 'listDevices',
        summary: 'List the devices of the authenticated account',
        security: bearer,
        response: { 200: DeviceListResponseSchema, ...errorResponses(401) },
      },
    },
    async (request) => {
      const device = await ctx.authenticateRequest(request);
      return { devices: await ctx.devices.list(device.accountId) };
    },
  );

  api.post(
    '/v1/devices/link-tokens',
    {
      schema: {
        tags: ['devices'],
        operationId: 'createLinkToken',
        summary: 'Create a one-time token that lets one new device join (primary only)',
        description: 'Valid for 10 minutes. The relay stores only its SHA-256.',
        security: bearer,
        response: { 200: LinkTokenResponseSchema, ...errorResponses(401, 403) },
      },
    },
    async (request) => {
      const device = await ctx.authenticateRequest(request);
      if (device.deviceId !== PRIMARY_DEVICE_ID) {
        throw new RelayError('FORBIDDEN', 'only the primary device can link devices');
      }
      const linkToken = randomBytes(24).toString('base64url');
      const expiresAt = new Date(Date.now() + LINK_TOKEN_LIFETIME_MS);
      await ctx.devices.createLinkToken(device.accountId, linkToken, expiresAt);
      return { linkToken, expiresAt: expiresAt.toISOString() };
    },
  );

  api.post(
    '/v1/devices',
    {
      schema: {
        tags: ['devices'],
        operationId: 'linkDevice',
        summary: 'Join an account as a new device, with a link token',
        description: 'At most 6 devices per account. Rate-limited per client address.',
        // The link token in the body is the credential.
        security: noCredentials,
        body: LinkDeviceRequestSchema,
        response: { 200: DeviceCreatedResponseSchema, ...errorResponses(400, 403, 409, 429) },
      },
    },
    async (request) => {
      ctx.limiters.registration.take(request.ip);
      const body = request.body;
      return ctx.devices.link(body.linkToken, body);
    },
  );

  api.delete(
    '/v1/devices/:deviceId',
    {
      schema: {
        tags: ['devices'],
        operationId: 'removeDevice',
        summary: 'Remove a linked device',
        description:
          'The primary may remove any linked device; a linked device may remove itself. Its sockets close on every instance and its tokens stop working at once.',
        security: bearer,
        params: Type.Object({ deviceId: DeviceIdParam }),
        response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const device = await ctx.authenticateRequest(request);
      const target = parseDeviceId(request.params.deviceId);
      if (target === PRIMARY_DEVICE_ID) {
        throw new RelayError('FORBIDDEN', 'the primary device is removed by deleting the account');
      }
      if (device.deviceId !== PRIMARY_DEVICE_ID && device.deviceId !== target) {
        throw new RelayError('FORBIDDEN', 'a linked device can only remove itself');
      }
      if (!(await ctx.devices.remove(device.accountId, target))) {
        throw new RelayError('DEVICE_NOT_FOUND');
      }
      return reply.code(204).send(null);
    },
  );
};
