import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ErrorBodySchema } from '@privcomm/wire';

/**
 * The Content-Security-Policy of every documentation route. The relay loads nothing from another
 * host: Swagger UI's scripts, styles and images are served from /docs/static, its only other
 * images are data: URIs in its stylesheet, and it fetches the document and "Try it out" calls
 * from the relay itself. Everything else (frames, workers, forms, plugins, being framed) is off.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Registers the OpenAPI generator; must run before the routes it documents. */
export const registerOpenApi = async (app: FastifyInstance): Promise<void> => {
  app.addSchema(ErrorBodySchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'privcomm relay',
        version: '1',
        license: { name: 'MIT', identifier: 'MIT' },
        description:
          'A blind relay for end-to-end encrypted messaging. It stores public keys and opaque ciphertext, never private keys or plaintext. Errors have the shape {error: {code, message, details?}}; the codes are listed in docs/protocol.md.',
      },
      // Relative: the API is on the host that serves this document, whatever name it has.
      servers: [{ url: '/', description: 'this relay' }],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A device token from POST /v1/auth/token (5 minutes).',
          },
          metricsToken: {
            type: 'http',
            scheme: 'bearer',
            description: "The operator's METRICS_TOKEN, when one is set.",
          },
        },
      },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });
};

/**
 * Serves /docs (Swagger UI, from the relay itself) and /openapi.json; call after every route is
 * registered. /redoc served ReDoc until it was removed (its bundle loaded a logo from a CDN and
 * brought React, MobX and styled-components into the relay's dependencies): it now leads to
 * /docs/, so old links keep working.
 */
export const registerDocsUi = async (app: FastifyInstance): Promise<void> => {
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // Applies to every route of the plugin: the page, its assets, /docs/json and /docs/yaml.
    staticCSP: DOCS_CSP,
    // No badge fetched from validator.swagger.io.
    validatorUrl: false,
    theme: { title: 'privcomm relay API' },
    // Without Swagger UI's top bar: its logo is an SVG with an inline <style> (which the policy
    // refuses) and its "Explore" box fetches other documents (which the policy refuses too).
    uiConfig: { layout: 'BaseLayout' },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-security-policy', DOCS_CSP).send(app.swagger()),
  );
  app.get('/redoc', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-security-policy', DOCS_CSP).redirect('/docs/', 301),
  );
};
