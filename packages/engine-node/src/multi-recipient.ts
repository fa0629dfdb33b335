// Not re-exported by the package's index (libsignal-client 0.103); the package has no exports map.
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';
import type { Address, Ciphertext, MultiRecipientMessage } from '@privcomm/client';
import { isAccountId, isDeviceId } from '@privcomm/wire';
import { own } from './store.ts';

/** One device's share of a multi-recipient message, as the relay hands it out. */
export interface DeviceShare {
  readonly address: Address;
  readonly registrationId: number;
  readonly ciphertext: Ciphertext;
}

/**
 * Splits a multi-recipient message (groupEncrypt) into each device's share, as the relay does
 * with libsignal's SealedSenderMultiRecipientMessage: the tests' stand-in for the relay (the
 * engine contract takes it, for the Node and the Kotlin engine alike). Every device of one
 * account gets the same bytes. Throws when the bytes are not such a message.
 */
export const splitMultiRecipientMessage = (message: MultiRecipientMessage): DeviceShare[] => {
  const parsed = new SealedSenderMultiRecipientMessage(own(message.content));
  return Object.entries(parsed.recipientsByServiceIdString()).flatMap(([accountId, recipient]) => {
    if (!isAccountId(accountId)) throw new TypeError(`recipient ${accountId} is not an account id`);
    const content = new Uint8Array(parsed.messageForRecipient(recipient));
    return recipient.deviceIds.map((deviceId, i) => {
      if (!isDeviceId(deviceId)) throw new TypeError(`recipient device ${deviceId} is invalid`);
      return {
        address: { accountId, deviceId },
        registrationId: recipient.registrationIds[i] as number,
        ciphertext: { type: message.type, content },
      };
    });
  });
};
