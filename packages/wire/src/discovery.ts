import { Type, type Static } from 'typebox';
import { exactBase64Pattern } from './base64.ts';
import { AccountIdSchema } from './ids.ts';

/**
 * Finding accounts by phone number without the relay learning numbers (docs/protocol.md,
 * "Discovery"). A client blinds each number (an RFC 9497 OPRF over ristretto255), the relay
 * evaluates the blinded elements with its discovery key, the client unblinds and derives a token.
 * Tokens are what the relay stores (one per account that chose to be found) and matches.
 */

/** The RFC 9497 ciphersuite: the client and the relay must agree on it. */
export const DISCOVERY_SUITE = 'ristretto255-SHA512';

/** A serialised ristretto255 element (blinded or evaluated). */
export const DISCOVERY_ELEMENT_BYTES = 32;

/** A discovery token: the first 32 bytes of the OPRF output. */
export const DISCOVERY_TOKEN_BYTES = 32;

/** Blinded elements per evaluation request. Each costs the relay about 3 ms of CPU. */
export const MAX_DISCOVERY_EVALUATIONS = 100;

/**
 * Tokens per lookup: during a key rotation each number has one token per active key, so twice a
 * full evaluation batch.
 */
export const MAX_DISCOVERY_LOOKUPS = 2 * MAX_DISCOVERY_EVALUATIONS;

/** Key versions count up from 1 with each rotation. */
export const DiscoveryKeyVersionSchema = Type.Integer({ minimum: 1, maximum: 2_147_483_647 });

const Element = Type.String({
  pattern: exactBase64Pattern(DISCOVERY_ELEMENT_BYTES),
  description: 'base64 of a 32-byte ristretto255 element.',
});
const Token = Type.String({
  pattern: exactBase64Pattern(DISCOVERY_TOKEN_BYTES),
  description: 'base64 of a 32-byte discovery token.',
});

/** POST /v1/discovery/evaluate */
export const DiscoveryEvaluateRequestSchema = Type.Object(
  { blinded: Type.Array(Element, { minItems: 1, maxItems: MAX_DISCOVERY_EVALUATIONS }) },
  { additionalProperties: false },
);
export type DiscoveryEvaluateRequest = Static<typeof DiscoveryEvaluateRequestSchema>;

export const DiscoveryEvaluationSchema = Type.Object({
  keyVersion: DiscoveryKeyVersionSchema,
  evaluated: Type.Array(Element, {
    maxItems: MAX_DISCOVERY_EVALUATIONS,
    description: 'One evaluated element per blinded element, in the request order.',
  }),
});
export type DiscoveryEvaluation = Static<typeof DiscoveryEvaluationSchema>;

export const DiscoveryEvaluateResponseSchema = Type.Object({
  evaluations: Type.Array(DiscoveryEvaluationSchema, {
    minItems: 1,
    maxItems: 2,
    description:
      'One entry per active key: the current key first, then, during a rotation grace period, the previous one.',
  }),
});
export type DiscoveryEvaluateResponse = Static<typeof DiscoveryEvaluateResponseSchema>;

/** POST /v1/discovery/lookup */
export const DiscoveryLookupRequestSchema = Type.Object(
  { tokens: Type.Array(Token, { minItems: 1, maxItems: MAX_DISCOVERY_LOOKUPS }) },
  { additionalProperties: false },
);
export type DiscoveryLookupRequest = Static<typeof DiscoveryLookupRequestSchema>;

export const DiscoveryMatchSchema = Type.Object({
  token: Token,
  accountId: AccountIdSchema,
});
export const DiscoveryLookupResponseSchema = Type.Object({
  matches: Type.Array(DiscoveryMatchSchema, {
    description:
      'Accounts that published one of the tokens. A token may match several accounts: the relay does not verify that a number belongs to whoever publishes it.',
  }),
});
export type DiscoveryLookupResponse = Static<typeof DiscoveryLookupResponseSchema>;

/** PUT /v1/discovery/token */
export const PublishDiscoveryTokenRequestSchema = Type.Object(
  { keyVersion: DiscoveryKeyVersionSchema, token: Token },
  { additionalProperties: false },
);
export type PublishDiscoveryTokenRequest = Static<typeof PublishDiscoveryTokenRequestSchema>;

/** GET /v1/discovery/token */
export const DiscoveryStatusSchema = Type.Object({
  keyVersion: DiscoveryKeyVersionSchema,
  publishedKeyVersion: Type.Union([DiscoveryKeyVersionSchema, Type.Null()], {
    description:
      'The key version of the token this account published, or null when it published none. When it differs from keyVersion, publish again.',
  }),
});
export type DiscoveryStatus = Static<typeof DiscoveryStatusSchema>;
