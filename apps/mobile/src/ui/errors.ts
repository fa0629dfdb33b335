import { ClientError, EngineError } from '@privcomm/client';

/**
 * The core's error codes (and the relay's codes inside RELAY_REFUSED) as sentences that say what
 * to do. The code decides; this only words it.
 */
export const explain = (error: unknown, relayUrl?: string): string => {
  if (error instanceof EngineError && error.code === 'UNTRUSTED_IDENTITY')
    return "This contact's safety number changed. Nothing was sent. Open the safety number to check it.";
  if (!(error instanceof ClientError))
    return `Something went wrong: ${String((error as Error)?.message ?? error)}`;
  const relay = relayUrl ?? 'the relay';
  switch (error.code) {
    case 'RELAY_UNREACHABLE':
      return `Cannot reach ${relay}. Check that this phone is online and that the address is right; if it is, the relay may be down: try again later.`;
    case 'NOT_A_RELAY':
      return `${relay} answered, but it is not a privcomm relay. Check the address (it is the one your relay's operator gave you).`;
    case 'RELAY_REFUSED':
      switch (error.relayCode) {
        case 'INVITE_REQUIRED':
          return 'This relay only accepts people with an invite code. Ask its operator for one and type it below.';
        case 'INVITE_INVALID':
          return 'That invite code is not valid: it may be mistyped, used up or expired. Check it, or ask the operator for a new one.';
        case 'RATE_LIMITED':
          return 'The relay is asking to slow down. Wait a minute and try again.';
        default:
          return `The relay refused: ${error.message}`;
      }
    case 'UNKNOWN_ACCOUNT':
      return 'That is not an account id. An account id looks like 8-4-4-4-12 letters and digits; ask your contact to share theirs.';
    case 'UNTRUSTED_IDENTITY':
      return "This contact's safety number changed. Nothing was sent. Open the safety number to check it.";
    case 'INVALID_CONTACT_LINK':
      return `${error.message.charAt(0).toUpperCase()}${error.message.slice(1)}. Ask your contact to share their link or QR code again.`;
    case 'OTHER_RELAY':
      return `This contact uses another relay: ${error.message.replace(/^that contact is on the relay /, '')}.`;
    case 'SAFETY_NUMBER_MISMATCH':
      return "The scanned code does not match this safety number. Make sure you scanned this contact's code for this conversation; if it was, do not trust this conversation until you have compared the numbers in person.";
    case 'CONNECTED_ELSEWHERE':
      return 'Another app connected as this device, so the relay closed this connection. Restart the app to connect again.';
    case 'SEND_FAILED':
      return `The message could not be sent: ${error.message}`;
    default:
      return error.message;
  }
};
