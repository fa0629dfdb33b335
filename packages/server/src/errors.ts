import { ERRORS, type ErrorBody, type ErrorCode } from '@privcomm/wire';

/**
 * The one error type routes throw. It carries a code from the shared catalogue; the HTTP status
 * and the default message come from the catalogue, so they cannot drift per route.
 */
export class RelayError extends Error {
  override readonly name = 'RelayError';
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    readonly details?: string,
    readonly extra: Omit<ErrorBody, 'error'> = {},
  ) {
    super(details === undefined ? ERRORS[code].message : `${ERRORS[code].message} (${details})`);
    this.status = ERRORS[code].status;
  }

  toBody(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: ERRORS[this.code].message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
      ...this.extra,
    };
  }
}

export const errorBody = (code: ErrorCode, details?: string): ErrorBody =>
  new RelayError(code, details).toBody();
