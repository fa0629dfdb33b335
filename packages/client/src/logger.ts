/**
 * What the core tells an interface's log about itself: why an item from the relay or a peer was
 * refused, why a reconnection or a best-effort send failed. The core never passes an id, a
 * number, a key or a text: `event` and `reason` are fixed phrases written in this package (a
 * test runs a whole send and receive through a capturing logger and checks that), so a log is
 * safe to share when asking for help.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ClientLogger {
  log(level: LogLevel, event: string, reason?: string): void;
}

/** The default: the core logs nothing unless an interface asks for it. */
export const noopLogger: ClientLogger = { log: () => undefined };

/**
 * A fixed phrase for an error, safe to log: the error's stable code when it has one (ClientError,
 * EngineError, ContentError), its class name otherwise. Never its message, which may carry ids.
 */
export const reasonOf = (error: unknown): string => {
  if (typeof error === 'object' && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown };
    if (typeof code === 'string' && /^[A-Z_]+$/.test(code))
      return code.toLowerCase().replaceAll('_', ' ');
    if (typeof name === 'string' && /^[A-Za-z]+$/.test(name)) return name;
  }
  return 'unknown error';
};
