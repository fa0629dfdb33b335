import pino, { type LoggerOptions } from 'pino';

/**
 * The relay logs what an operator needs (starts, stops, failures, counts) and nothing that
 * identifies a person: no IP addresses, no account or device ids, no tokens, no keys, no
 * request URLs (they contain ids). Fastify's request logging is off; the error handler logs
 * only the route pattern and the error code. The redaction list is a second line of defence
 * for objects that reach the logger by mistake.
 */
export const REDACTED_PATHS = [
  'req',
  'res',
  'request',
  'reply',
  'headers',
  '*.headers',
  'authorization',
  '*.authorization',
  'token',
  '*.token',
  'ip',
  '*.ip',
  'remoteAddress',
  '*.remoteAddress',
  'accountId',
  '*.accountId',
  'deviceId',
  '*.deviceId',
  'url',
  '*.url',
  'body',
  '*.body',
];

export const loggerOptions = (level: string): LoggerOptions => ({
  level,
  base: { service: 'privcomm-relay' },
  redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  serializers: {
    // pino's default error serializer is kept; messages of our own errors never contain ids.
    err: pino.stdSerializers.err,
  },
});

export const createLogger = (level: string, destination?: pino.DestinationStream): pino.Logger =>
  destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));

/**
 * What of an unexpected error may be logged. PostgreSQL errors carry a `detail` with the values
 * of the offending row (ids, keys), so only the message, the SQLSTATE and the stack are kept.
 */
export const safeError = (error: unknown): Record<string, unknown> => {
  if (!(error instanceof Error)) return { message: 'non-error thrown' };
  const sqlState = (error as { code?: unknown }).code;
  return {
    type: error.name,
    message: error.message,
    ...(typeof sqlState === 'string' ? { code: sqlState } : {}),
    stack: error.stack,
  };
};
