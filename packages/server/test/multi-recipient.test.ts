import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../src/errors.ts';
import { parseMultiRecipientMessage } from '../src/services/multi-recipient.ts';
import { GroupSender, type RecipientAccount } from './support/group-sender.ts';

/**
 * The relay's reader of multi-recipient sealed messages against libsignal's own
 * (SealedSenderMultiRecipientMessage, which the relay cannot bundle): the same recipients,
 * devices and registration ids, byte for byte the same shares, and refusals that never throw
 * anything but a 400.
 */

const accounts = (shape: readonly number[][]): RecipientAccount[] =>
  shape.map((deviceIds) => ({
    accountId: randomUUID(),
    devices: deviceIds.map((deviceId) => ({
      deviceId,
      registrationId: randomInt(1, 16381),
    })),
  }));

const expectRefused = (data: Buffer, max = 1000): RelayError => {
  try {
    parseMultiRecipientMessage(data, max);
  } catch (error) {
    expect(error).toBeInstanceOf(RelayError);
    expect((error as RelayError).code).toBe('VALIDATION_FAILED');
    return error as RelayError;
  }
  return expect.fail('the bytes were expected to be refused');
};

describe('the multi-recipient message reader', () => {
  it('reads what libsignal reads, and cuts the same shares', async () => {
    for (const shape of [[[1]], [[1, 2, 127]], [[3], [1, 2], [127], [1, 4, 5, 6, 7, 8]]]) {
      const sender = new GroupSender(randomUUID());
      const recipients = accounts(shape);
      for (const account of recipients) await sender.addRecipient(account);
      const message = await sender.encrypt(recipients, 'hello group');
      const parsed = parseMultiRecipientMessage(message, 1000);
      const reference = new SealedSenderMultiRecipientMessage(new Uint8Array(message));
      const byAccount = reference.recipientsByServiceIdString();
      expect(parsed.map((account) => account.accountId).sort()).toEqual(
        Object.keys(byAccount).sort(),
      );
      for (const account of parsed) {
        const expected = byAccount[account.accountId]!;
        expect(account.devices.map((device) => device.deviceId)).toEqual(expected.deviceIds);
        expect(account.devices.map((device) => device.registrationId)).toEqual(
          expected.registrationIds,
        );
        expect(account.share).toEqual(Buffer.from(reference.messageForRecipient(expected)));
        // And the recipient opens it.
        expect(await sender.open(account.accountId, { type: 2, content: account.share })).toBe(
          'hello group',
        );
      }
      // The registration ids are the ones the sessions were made with.
      for (const account of recipients) {
        const read = parsed.find((p) => p.accountId === account.accountId);
        expect(read?.devices).toEqual(account.devices);
      }
    }
  });

  it('refuses truncated, foreign and oversized-count messages with a 400, never a crash', async () => {
    const sender = new GroupSender(randomUUID());
    const recipients = accounts([[1, 2], [1]]);
    for (const account of recipients) await sender.addRecipient(account);
    const message = await sender.encrypt(recipients, 'x');
    // Version, count, then per account its service id (17), 3 bytes per device and 48: cut
    // anywhere up to the end of the shared part's public key (32 bytes), it is refused.
    const sharedStart = 1 + 1 + (17 + 2 * 3 + 48) + (17 + 3 + 48);
    for (let length = 0; length <= sharedStart + 32; length += 1) {
      expectRefused(message.subarray(0, length));
    }
    expectRefused(Buffer.concat([Buffer.of(0x11), message.subarray(1)]));
    expectRefused(randomBytes(200));
    // A count above the limit is refused before anything else is read.
    expect(expectRefused(Buffer.from([0x23, 0xe9, 0x07]), 1000).details).toContain('at most 1000');
    expectRefused(message, 1);
    // A recipient that is not an account (a PNI service id, kind 1).
    const pni = Buffer.from(message);
    pni[2] = 0x01;
    expectRefused(pni);
    // Device id 0 (libsignal's excluded recipient): not accepted.
    const excluded = Buffer.from(message);
    excluded[19] = 0x00;
    expectRefused(excluded);
  });
});
