import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  authChallengeMessage,
  ChallengeRequestSchema,
  ChallengeResponseSchema,
  TokenRequestSchema,
  TokenResponseSchema,
  type AccountId,
  type DeviceId,
} from '@privcomm/wire';
import { decodeCanonicalBase64 } from '../canonical-base64.ts';
import type { RelayContext } from '../context.ts';
import { RelayError } from '../errors.ts';
import {
  CHALLENGE_LIFETIME_SECONDS,
  openChallenge,
  sealChallenge,
  usedNonceHash,
} from '../services/challenges.ts';
import { verifyLoginSignature } from '../services/tokens.ts';
import { errorResponses, noCredentials } from './schemas.ts';

const decodeFixed = (value: string, bytes: number, field: string): Buffer => {
  const decoded = decodeCanonicalBase64(value);
  if (decoded?.length !== bytes) {
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
        description: `The nonce is valid for ${CHALLENGE_LIFETIME_SECONDS} s and only for the device named. Issuing one stores nothing. Rate-limited per client address, never per device, so that nobody can use up another device's logins.`,
        security: noCredentials,
        body: ChallengeRequestSchema,
        response: { 200: ChallengeResponseSchema, ...errorResponses(400, 404, 429) },
      },
    },
    async (request) => {
      const body = request.body;
      const accountId = body.accountId as AccountId;
      const deviceId = body.deviceId as DeviceId;
      // Per address: a limit per device would let anyone who knows an account id use it up.
      ctx.limiters.login.take(request.ip);
      if (!(await ctx.deviceExists(accountId, deviceId))) throw new RelayError('DEVICE_NOT_FOUND');
      const expirySeconds = Math.floor(Date.now() / 1000) + CHALLENGE_LIFETIME_SECONDS;
      const nonce = sealChallenge(ctx.challengeKey, accountId, deviceId, expirySeconds);
      const expiresAt = new Date(expirySeconds * 1000);
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
          'signature = Ed25519(authKey, "privcomm-device-auth-v1:<accountId>:<deviceId>:" || nonce). A challenge gives one token: it is used up by the first submission whose signature verifies. Rate-limited per client address.',
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
      ctx.limiters.login.take(request.ip);
      const nonce = decodeFixed(body.nonce, 32, 'nonce');
      const signature = decodeFixed(body.signature, 64, 'signature');
      const nowSeconds = Math.floor(Date.now() / 1000);
      // During a key rotation another instance may have sealed it with the other key.
      const expiry = [ctx.challengeKey, ...ctx.challengeVerifyKeys]
        .map((key) => openChallenge(key, device.accountId, device.deviceId, nonce, nowSeconds))
        .find((opened) => opened !== undefined);
      if (expiry === undefined) throw new RelayError('CHALLENGE_INVALID');
      const authKey = await ctx.authKeyOf(device.accountId, device.deviceId);
      const message = authChallengeMessage(device.accountId, device.deviceId, nonce);
      if (!authKey || !verifyLoginSignature(authKey, message, signature)) {
        throw new RelayError('SIGNATURE_INVALID');
      }
      // Only a right signature uses the challenge up: nobody else can spend a device's nonce.
      // Also records the device as seen today.
      const used = await ctx.useChallenge({
        nonceHash: usedNonceHash(nonce),
        expirySeconds: expiry,
        ...device,
      });
      if (!used) {
        throw new RelayError('CHALLENGE_INVALID');
      }
      const { token, expiresAt } = await ctx.tokens.issue(device);
      return { token, expiresAt: expiresAt.toISOString() };
    },
  );
};
