import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

/**
 * The OpenAPI document must not drift: `npm run lint:openapi` lints it in CI, and these checks
 * fail fast (in any test run) when a new route forgets its operationId or its security.
 */

/** The operations anyone may call without credentials; every other one needs a device token. */
const OPEN_OPERATIONS = [
  'GET /health',
  'GET /ready',
  'GET /metrics', // open unless METRICS_TOKEN is set
  'POST /v1/accounts',
  'POST /v1/auth/challenge',
  'POST /v1/auth/token',
  'POST /v1/devices', // authorised by the link token in its body
  'GET /v1/websocket', // authenticates inside the socket
  'GET /v1/provisioning',
].sort();

interface Operation {
  readonly operationId?: string;
  readonly security?: Record<string, string[]>[];
}
interface Document {
  readonly paths: Record<string, Record<string, Operation>>;
  readonly security?: unknown;
  readonly components: { readonly securitySchemes: Record<string, unknown> };
}

let relay: TestRelay;
let database: { url: string; drop: () => Promise<void> };
let operations: [string, Operation][];
let document: Document;

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await startRelay(database.url);
  document = (await relay.relay.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  operations = Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]): [string, Operation] => [
      `${method.toUpperCase()} ${path}`,
      operation,
    ]),
  );
});
afterAll(async () => {
  await relay?.close();
  await database?.drop();
});

describe('the OpenAPI document', () => {
  it('documents operations', () => {
    expect(operations.length).toBeGreaterThan(OPEN_OPERATIONS.length);
  });

  it('gives every operation an operationId, each a different one', () => {
    const missing = operations.filter(([, operation]) => !operation.operationId);
    expect(missing.map(([name]) => name)).toEqual([]);
    const ids = operations.map(([, operation]) => operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('declares the security of every operation itself, with schemes it defines', () => {
    // No document-wide default: a new route must say what it needs.
    expect(document.security).toBeUndefined();
    const undeclared = operations.filter(([, operation]) => operation.security === undefined);
    expect(undeclared.map(([name]) => name)).toEqual([]);
    for (const [name, operation] of operations) {
      for (const requirement of operation.security ?? []) {
        for (const scheme of Object.keys(requirement)) {
          expect(document.components.securitySchemes, name).toHaveProperty(scheme);
        }
      }
    }
  });

  it('lets only the listed operations be called without credentials', () => {
    // `security: []`, or an empty requirement among others, means no credentials are needed.
    const anonymous = (operation: Operation): boolean =>
      operation.security !== undefined &&
      (operation.security.length === 0 ||
        operation.security.some((requirement) => Object.keys(requirement).length === 0));
    const open = operations
      .filter(([, operation]) => anonymous(operation))
      .map(([name]) => name)
      .sort();
    expect(open).toEqual(OPEN_OPERATIONS);
  });
});
