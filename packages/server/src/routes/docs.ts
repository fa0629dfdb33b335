import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ErrorBodySchema } from '@privcomm/wire';

const require = createRequire(import.meta.url);

/** ReDoc's standalone bundle, served by the relay itself: the docs need no CDN. */
const redocBundle = (): Buffer =>
  readFileSync(require.resolve('redoc/bundles/redoc.standalone.js'));

const REDOC_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>privcomm relay API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/openapi.json"></redoc><script src="/redoc/redoc.standalone.js"></script></body></html>`;

/** Registers the OpenAPI generator; must run before the routes it documents. */
export const registerOpenApi = async (app: FastifyInstance): Promise<void> => {
  app.addSchema(ErrorBodySchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'privcomm relay',
        version: '1',
        description:
          'A blind relay for end-to-end encrypted messaging. It stores public keys and opaque ciphertext, never private keys or plaintext. Errors have the shape {error: {code, message, details?}}; the codes are listed in docs/protocol.md.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });
};

/** Serves /docs (Swagger UI), /redoc and /openapi.json; call after every route is registered. */
export const registerDocsUi = async (app: FastifyInstance): Promise<void> => {
  await app.register(swaggerUi, { routePrefix: '/docs' });
  let bundle: Buffer | undefined;
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/redoc', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(REDOC_PAGE),
  );
  app.get('/redoc/redoc.standalone.js', { schema: { hide: true } }, async (_request, reply) => {
    bundle ??= redocBundle();
    return reply.type('application/javascript; charset=utf-8').send(bundle);
  });
};
