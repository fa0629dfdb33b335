/** Errors the core raises, each with a stable code an interface can map to a message. */
export type ClientErrorCode =
  /** The relay could not be reached, or answered something that is not the protocol. */
  | 'RELAY_UNREACHABLE'
  /** Something answered, but not as a privcomm relay of this version does. */
  | 'NOT_A_RELAY'
  /** The relay refused the request; `relayCode` says why (a code from the relay's catalogue). */
  | 'RELAY_REFUSED'
  | 'NOT_REGISTERED'
  | 'ALREADY_REGISTERED'
  | 'UNKNOWN_CONTACT'
  | 'UNKNOWN_ACCOUNT'
  | 'UNTRUSTED_IDENTITY'
  | 'INVALID_LINK_CODE'
  | 'LINK_TIMEOUT'
  | 'NOT_PRIMARY'
  | 'SEND_FAILED'
  /** The text exceeds MAX_TEXT_BYTES (the message says how long a text may be). */
  | 'TEXT_TOO_LONG'
  /** Another client connected as this device; the relay keeps only the newest connection. */
  | 'CONNECTED_ELSEWHERE'
  /** `start` was called while the connection is already kept. */
  | 'ALREADY_STARTED'
  /** Not a possible phone number, or one without a country code and no country given. */
  | 'INVALID_PHONE_NUMBER'
  /** Not an ISO 3166 two-letter country code. */
  | 'INVALID_COUNTRY'
  /** A CSV or vCard address book that cannot be read (the message says where). */
  | 'INVALID_ADDRESS_BOOK'
  /** A contact link that does not follow the format (contact-link.ts); the message says why. */
  | 'INVALID_CONTACT_LINK'
  /** A contact link of another relay: relays do not exchange messages with each other. */
  | 'OTHER_RELAY'
  /** A message that cannot be retried (unknown, not sent by this device, or already sent). */
  | 'NOT_RETRYABLE'
  /** A scanned safety-number code differs from this side's (verifyScanned). */
  | 'SAFETY_NUMBER_MISMATCH'
  /** No group by that title or id on this device, or one this account is no longer in. */
  | 'UNKNOWN_GROUP';

export class ClientError extends Error {
  override readonly name = 'ClientError';
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly relayCode?: string,
  ) {
    super(message);
  }
}

/**
 * Relay refusals that mean "later", not "never": the message is kept and sent again. UNAVAILABLE
 * (the relay lost its database) included: the relay may even have stored it, and a resend under
 * the same id is de-duplicated by the recipient.
 */
const RETRY_LATER_CODES: readonly (string | undefined)[] = [
  'RATE_LIMITED',
  'QUEUE_FULL',
  'UNAVAILABLE',
];

/** Whether a failed send should stay in the outbox for a later retry. */
export const isRetryable = (error: ClientError): boolean =>
  error.code === 'RELAY_UNREACHABLE' ||
  (error.code === 'RELAY_REFUSED' && RETRY_LATER_CODES.includes(error.relayCode));
