import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  MAX_MULTI_RECIPIENT_ACCOUNTS,
  MAX_MULTI_RECIPIENT_BYTES,
  SendMessagesRequestSchema,
  SendMessagesResponseSchema,
  SendMultiRecipientRequestSchema,
  type AccountId,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { AccountIdParam, bearer, errorResponses } from './schemas.ts';

export const registerMessageRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  // Registered before the :accountId route; a static segment wins over a parameter anyway.
  api.put(
    '/v1/messages/multi',
    {
      schema: {
        tags: ['messages'],
        operationId: 'sendMultiRecipientMessage',
        summary: 'Send one multi-recipient sealed message (a group message) to many accounts',
        description: `content is libsignal's multi-recipient sealed sender (v2) message, naming each recipient device with its registration id; the relay seals each device's share to its account's identity key (a fresh X25519 ephemeral key each, HKDF-SHA256, AES-256-GCM: envelope type 3, see docs/protocol.md) and stores it as an ordinary envelope, in one transaction, and nothing that links them: no two stored shares have bytes in common. At most ${MAX_MULTI_RECIPIENT_ACCOUNTS} recipient accounts and ${MAX_MULTI_RECIPIENT_BYTES} bytes decoded; each sealed share (49 bytes more than the share) is held to the per-device limit (96 KiB stored, 4 KiB online). The sender's SEND_BYTES_PER_HOUR is charged the bytes uploaded, once. Every account is checked as PUT /v1/messages/{accountId} checks one: 404 {unknownAccounts} if any does not exist; otherwise 410 if any device is stale, else 409, both with {accounts: [{accountId, missingDevices, extraDevices, staleDevices}]} listing every account to fix; 429 QUEUE_FULL {fullAccounts}. Nothing is stored unless all of it is. The sender's own account is refused (400): copies to your own devices go pairwise.`,
        security: bearer,
        body: SendMultiRecipientRequestSchema,
        response: {
          200: SendMessagesResponseSchema,
          ...errorResponses(400, 401, 404, 409, 410, 413, 429),
        },
      },
    },
    async (request) => {
      const sender = await ctx.authenticateRequest(request);
      return ctx.sender.sendMulti(sender, request.body);
    },
  );
  api.put(
    '/v1/messages/:accountId',
    {
      schema: {
        tags: ['messages'],
        operationId: 'sendMessages',
        summary: 'Send one ciphertext to each device of an account',
        description:
          'The device set is checked first: any stale registration id gives 410 {staleDevices}; otherwise missing or extra devices give 409 {missingDevices, extraDevices}; nothing is stored unless the whole set is valid. A 200 means every envelope is durable. With online=true nothing is stored and devices without a socket miss it. To your own account, address your other devices.',
        security: bearer,
        params: Type.Object({ accountId: AccountIdParam }),
        body: SendMessagesRequestSchema,
        response: {
          200: SendMessagesResponseSchema,
          ...errorResponses(400, 401, 404, 409, 410, 413, 429),
        },
      },
    },
    async (request) => {
      const sender = await ctx.authenticateRequest(request);
      const recipient = request.params.accountId as AccountId;
      return ctx.sender.send(sender, recipient, request.body);
    },
  );
};
