import { DrizzleQueryError } from 'drizzle-orm';
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

/** A SQLSTATE: five digits or capital letters, PostgreSQL's own error code. */
const SQLSTATE = /^[0-9A-Z]{5}$/;

const databaseErrorCode = (error: Error): string | undefined => {
  for (const candidate of [error, (error as { cause?: unknown }).cause]) {
    const code = (candidate as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && SQLSTATE.test(code)) return code;
  }
  return undefined;
};

/** The stack's frames without its first line, which repeats the message. */
const framesOnly = (stack: string | undefined): string | undefined =>
  stack
    ?.split('\n')
    .filter((line) => /^\s+at /.test(line))
    .join('\n');

/**
 * What of an unexpected error may be logged. A failed query's error names the query's
 * parameters (the ORM's message is "Failed query: … params: <account id>, …") and PostgreSQL's
 * own messages and `detail` can quote values (ids, keys): for any error that carries a SQLSTATE,
 * only that code, a generic message and the stack frames are kept. Other errors keep their
 * message, which never holds request data in this code base.
 */
export const safeError = (error: unknown): Record<string, unknown> => {
  if (!(error instanceof Error)) return { message: 'non-error thrown' };
  const sqlState = databaseErrorCode(error);
  // The ORM's wrapper is named plain "Error"; a connection failure under it has no SQLSTATE.
  if (sqlState !== undefined || error instanceof DrizzleQueryError) {
    return {
      type: error.name,
      message: 'database query failed',
      ...(sqlState === undefined ? {} : { code: sqlState }),
      stack: framesOnly(error.stack),
    };
  }
  const code = (error as { code?: unknown }).code;
  return {
    type: error.name,
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
    stack: error.stack,
  };
};
