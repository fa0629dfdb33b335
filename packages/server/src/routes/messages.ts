import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import {
  SendMessagesRequestSchema,
  SendMessagesResponseSchema,
  type AccountId,
} from '@privcomm/wire';
import type { RelayContext } from '../context.ts';
import { AccountIdParam, bearer, errorResponses } from './schemas.ts';

export const registerMessageRoutes = (app: FastifyInstance, ctx: RelayContext): void => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
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
