/**
 * JSON-RPC 2.0 (https://www.jsonrpc.org/specification), transport-free: text in, text out.
 * A transport (stdin/stdout, a Unix socket, later a loopback bridge) hands each line it reads
 * to `handle` and writes back what it returns; `notification` builds what the daemon pushes.
 */

export const RPC_ERRORS = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** A method that failed for a reason of the application; `data.code` is the stable code. */
  APPLICATION: -32000,
} as const;

/** A request of more than this is refused unread (-32600), so that one line cannot fill memory. */
export const MAX_REQUEST_BYTES = 256 * 1024;

/** An error a method throws on purpose, with its JSON-RPC code and data. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export type Params = Record<string, unknown>;

/** A method: its parameters (named, already an object), its result (any JSON value). */
export type Method = (params: Params) => Promise<unknown>;

/** Turns an error that is not an RpcError into one (application errors with their codes). */
export type ErrorMapper = (error: unknown) => RpcError;

type Id = string | number | null;

interface Response {
  jsonrpc: '2.0';
  id: Id;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

const failure = (id: Id, error: RpcError): Response => ({
  jsonrpc: '2.0',
  id,
  error: {
    code: error.code,
    message: error.message,
    ...(error.data === undefined ? {} : { data: error.data }),
  },
});

const isId = (value: unknown): value is Id =>
  value === null ||
  typeof value === 'string' ||
  (typeof value === 'number' && Number.isFinite(value));

/** A notification from the daemon: no id, no answer expected. */
export const notification = (method: string, params: Record<string, unknown>): string =>
  JSON.stringify({ jsonrpc: '2.0', method, params });

export class Dispatcher {
  constructor(
    private readonly methods: Readonly<Record<string, Method>>,
    private readonly mapError: ErrorMapper,
  ) {}

  /** One line from a client: the line to answer with, or undefined (notifications only). */
  async handle(text: string): Promise<string | undefined> {
    if (Buffer.byteLength(text, 'utf8') > MAX_REQUEST_BYTES)
      return JSON.stringify(
        failure(
          null,
          new RpcError(
            RPC_ERRORS.INVALID_REQUEST,
            `request larger than ${MAX_REQUEST_BYTES} bytes`,
          ),
        ),
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return JSON.stringify(failure(null, new RpcError(RPC_ERRORS.PARSE, 'parse error: not JSON')));
    }
    if (Array.isArray(parsed)) {
      if (parsed.length === 0)
        return JSON.stringify(
          failure(null, new RpcError(RPC_ERRORS.INVALID_REQUEST, 'empty batch')),
        );
      const answers = (await Promise.all(parsed.map((item) => this.one(item)))).filter(
        (answer): answer is Response => answer !== undefined,
      );
      return answers.length === 0 ? undefined : JSON.stringify(answers);
    }
    const answer = await this.one(parsed);
    return answer === undefined ? undefined : JSON.stringify(answer);
  }

  private async one(request: unknown): Promise<Response | undefined> {
    if (typeof request !== 'object' || request === null || Array.isArray(request))
      return failure(null, new RpcError(RPC_ERRORS.INVALID_REQUEST, 'a request is an object'));
    const { jsonrpc, method, params, id } = request as Record<string, unknown>;
    const hasId = 'id' in request;
    const replyId = hasId && isId(id) ? id : null;
    if (jsonrpc !== '2.0')
      return failure(replyId, new RpcError(RPC_ERRORS.INVALID_REQUEST, 'jsonrpc must be "2.0"'));
    if (hasId && !isId(id))
      return failure(
        null,
        new RpcError(RPC_ERRORS.INVALID_REQUEST, 'id must be a string, a number or null'),
      );
    if (typeof method !== 'string')
      return failure(replyId, new RpcError(RPC_ERRORS.INVALID_REQUEST, 'method must be a string'));
    if (params !== undefined && (typeof params !== 'object' || params === null))
      return failure(
        replyId,
        new RpcError(RPC_ERRORS.INVALID_REQUEST, 'params must be an object or an array'),
      );
    const run = async (): Promise<Response> => {
      const handler = Object.hasOwn(this.methods, method) ? this.methods[method] : undefined;
      if (!handler)
        return failure(replyId, new RpcError(RPC_ERRORS.METHOD_NOT_FOUND, `no method "${method}"`));
      if (Array.isArray(params))
        return failure(
          replyId,
          new RpcError(RPC_ERRORS.INVALID_PARAMS, 'params are named: give an object'),
        );
      try {
        const result = await handler((params as Params | undefined) ?? {});
        return { jsonrpc: '2.0', id: replyId, result: result ?? null };
      } catch (error) {
        return failure(replyId, error instanceof RpcError ? error : this.mapError(error));
      }
    };
    const answer = await run();
    // A notification (no id) gets no answer, not even an error.
    return hasId ? answer : undefined;
  }
}

/** Parameter checks for methods: each throws -32602 with what is wrong. */
export const param = {
  string(params: Params, name: string, options: { optional?: boolean } = {}): string {
    const value = params[name];
    if (value === undefined && options.optional) return '';
    if (typeof value !== 'string' || value === '')
      throw new RpcError(RPC_ERRORS.INVALID_PARAMS, `params.${name} must be a non-empty string`);
    return value;
  },
  boolean(params: Params, name: string, fallback: boolean): boolean {
    const value = params[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean')
      throw new RpcError(RPC_ERRORS.INVALID_PARAMS, `params.${name} must be true or false`);
    return value;
  },
  integer(params: Params, name: string, min: number, max: number): number {
    const value = params[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
      throw new RpcError(
        RPC_ERRORS.INVALID_PARAMS,
        `params.${name} must be a whole number from ${min} to ${max}`,
      );
    return value;
  },
  /** No parameter beyond `known`: a misspelt one is an error, not silently ignored. */
  only(params: Params, ...known: string[]): void {
    const unknown = Object.keys(params).filter((key) => !known.includes(key));
    if (unknown.length > 0)
      throw new RpcError(
        RPC_ERRORS.INVALID_PARAMS,
        `unknown params: ${unknown.join(', ')} (known: ${known.join(', ') || 'none'})`,
      );
  },
};
