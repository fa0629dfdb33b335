import { RelayError } from '../errors.ts';

/**
 * Reads libsignal's multi-recipient sealed message (sealed sender v2 "SentMessage", as
 * sealedSenderMultiRecipientEncrypt makes it) far enough to fan it out, and cuts each
 * recipient's share ("ReceivedMessage") as libsignal's SealedSenderMultiRecipientMessage does.
 * The relay decrypts nothing; it learns the recipients' account ids, device ids and registration
 * ids, which it needs to route and check them.
 *
 * Written here rather than taken from @signalapp/libsignal-client: that package is a native
 * addon, and the relay ships as one JavaScript bundle without node_modules (Dockerfile). The
 * tests check this reader against libsignal's own on messages libsignal made
 * (test/multi-recipient.test.ts).
 *
 * Layout (libsignal rust/protocol/src/sealed_sender.rs):
 *   version byte 0x23 (v2, recipients as 17-byte service ids) or 0x22 (v2, 16-byte ACI uuids)
 *   varint: recipient count
 *   per recipient: service id; then devices: a device id byte (1..127; 0 would mark an excluded
 *     recipient, which the relay does not accept) and a big-endian u16 whose top bit says another
 *     device follows and whose other bits are the registration id; then 48 bytes (the
 *     recipient's wrapped key and authentication tag)
 *   the shared part: the ephemeral public key (32 bytes) and the ciphertext
 * A recipient's share is 0x22, its 48 bytes, and the shared part.
 */

const VERSION_SERVICE_IDS = 0x23;
const VERSION_UUIDS = 0x22;
const ACI_KIND = 0x00;
const RECIPIENT_KEY_BYTES = 48;
const PUBLIC_KEY_BYTES = 32;
const HAS_MORE = 0x8000;

export interface MultiRecipientDevice {
  readonly deviceId: number;
  readonly registrationId: number;
}

export interface MultiRecipientAccount {
  /** The account id (lowercase UUID), as the relay's accounts table spells it. */
  readonly accountId: string;
  readonly devices: readonly MultiRecipientDevice[];
  /** The bytes every device of this account receives. */
  readonly share: Buffer;
}

const invalid = (reason: string): RelayError =>
  new RelayError('VALIDATION_FAILED', `content is not a multi-recipient message: ${reason}`);

const uuidText = (bytes: Buffer): string => {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

/** Parses `data`; VALIDATION_FAILED (400) saying why when it is not such a message. */
export const parseMultiRecipientMessage = (
  data: Buffer,
  maxRecipients: number,
): MultiRecipientAccount[] => {
  let at = 0;
  const take = (length: number, what: string): Buffer => {
    if (at + length > data.length) throw invalid(`it ends inside ${what}`);
    const bytes = data.subarray(at, at + length);
    at += length;
    return bytes;
  };
  const version = take(1, 'the version')[0];
  if (version !== VERSION_SERVICE_IDS && version !== VERSION_UUIDS) {
    throw invalid(`unknown version ${String(version)}`);
  }
  let count = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = take(1, 'the recipient count')[0] as number;
    if (shift > 21) throw invalid('the recipient count is too long');
    count += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
  }
  if (count === 0) throw invalid('it has no recipient');
  if (count > maxRecipients) {
    throw new RelayError(
      'VALIDATION_FAILED',
      `${count} recipient accounts; at most ${maxRecipients} per upload`,
    );
  }
  const recipients: { accountId: string; devices: MultiRecipientDevice[]; key: Buffer }[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i += 1) {
    if (version === VERSION_SERVICE_IDS && take(1, 'a service id')[0] !== ACI_KIND) {
      throw invalid('a recipient is not an account (ACI)');
    }
    const accountId = uuidText(take(16, 'a service id'));
    if (seen.has(accountId)) throw invalid('a recipient appears twice');
    seen.add(accountId);
    const devices: MultiRecipientDevice[] = [];
    for (;;) {
      const deviceId = take(1, 'a device id')[0] as number;
      if (deviceId === 0) throw invalid('excluded recipients are not accepted');
      if (deviceId > 127) throw invalid(`device id ${deviceId} is out of range`);
      if (devices.some((device) => device.deviceId === deviceId)) {
        throw invalid('a device appears twice');
      }
      const word = take(2, 'a registration id').readUInt16BE(0);
      devices.push({ deviceId, registrationId: word & ~HAS_MORE });
      if ((word & HAS_MORE) === 0) break;
    }
    recipients.push({ accountId, devices, key: take(RECIPIENT_KEY_BYTES, 'a recipient key') });
  }
  const shared = data.subarray(at);
  if (shared.length <= PUBLIC_KEY_BYTES) throw invalid('the shared part is too short');
  return recipients.map(({ accountId, devices, key }) => ({
    accountId,
    devices,
    share: Buffer.concat([Buffer.of(VERSION_UUIDS), key, shared]),
  }));
};
