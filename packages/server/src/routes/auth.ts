import { randomBytes } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  ChallengeRequestSchema,
  ChallengeResponseSchema,
  TokenRequestSchema,
  TokenResponseSchema,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import { CHALLENGE_LIFETIME_SECONDS, verifyChallengeSignature } from '../services/tokens.ts';
import { errorResponses, noCredentials } from './schemas.ts';

const decodeFixed = (value: string, bytes: number, field: string): Buffer => {
  const decoded = Buffer.from(value, 'base64');
  if (decoded.length !== bytes || decoded.toString('base64') !== value) {
    throw new RelayError('VALIDATION_FAILED', `${field} must be base64 of ${bytes} bytes`);
  }
  return decoded;
};

export const registerAuthRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.post(
    '/v1/auth/challenge',
    {
      schema: {
        tags: ['auth'],
        operationId: 'createAuthChallenge',
        summary: 'Get a single-use nonce for a device to sign',
        description: `The nonce is valid for ${CHALLENGE_LIFETIME_SECONDS} s and only for the device named.`,
        security: noCredentials,
        body: ChallengeRequestSchema,
        response: { 200: ChallengeResponseSchema, ...errorResponses(400, 404, 429) },
      },
    },
    async (request) => {
      const body = request.body;
      const accountId = body.accountId as AccountId;
      const deviceId = body.deviceId as DeviceId;
      ctx.limiters.auth.take(`${accountId}.${deviceId}`);
      if (!(await ctx.devices.exists(accountId, deviceId)))
        throw new RelayError('DEVICE_NOT_FOUND');
      const nonce = randomBytes(32);
      const expiresAt = await ctx.challenges.create(
        accountId,
        deviceId,
        nonce,
        CHALLENGE_LIFETIME_SECONDS,
      );
      return { nonce: nonce.toString('base64'), expiresAt: expiresAt.toISOString() };
    },
  );

  api.post(
    '/v1/auth/token',
    {
      schema: {
        tags: ['auth'],
        operationId: 'createDeviceToken',
        summary: 'Exchange a signed challenge for a 5-minute device token',
        description:
          'signature = Ed25519(authKey, "privcomm-device-auth-v1:<accountId>:<deviceId>:" || nonce). The challenge is consumed whether or not the signature verifies.',
        security: noCredentials,
        body: TokenRequestSchema,
        response: { 200: TokenResponseSchema, ...errorResponses(400, 401, 429) },
      },
    },
    async (request) => {
      const body = request.body;
      const device = {
        accountId: body.accountId as AccountId,
        deviceId: body.deviceId as DeviceId,
      };
      ctx.limiters.auth.take(`${device.accountId}.${device.deviceId}`);
      const nonce = decodeFixed(body.nonce, 32, 'nonce');
      const signature = decodeFixed(body.signature, 64, 'signature');
      if (!(await ctx.challenges.consume(device.accountId, device.deviceId, nonce))) {
        throw new RelayError('CHALLENGE_INVALID');
      }
      const authKey = await ctx.devices.authKey(device.accountId, device.deviceId);
      if (!authKey || !verifyChallengeSignature(authKey, device, nonce, signature)) {
        throw new RelayError('SIGNATURE_INVALID');
      }
      await ctx.devices.touchLastSeen(device.accountId, device.deviceId);
      const { token, expiresAt } = await ctx.tokens.issue(device);
      return { token, expiresAt: expiresAt.toISOString() };
    },
  );
};
