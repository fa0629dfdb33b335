import { createServer, type Server } from 'node:http';
import { fireEvent, waitFor, within } from '@testing-library/react-native';
import pg from 'pg';
import { identityWarningText } from '../src/screens/IdentityWarning.tsx';
import {
  addContact,
  fillOnboarding,
  launch,
  onboard,
  safetyDigits,
  send,
  WAIT,
  type Phone,
} from './support/phones.tsx';
import {
  inviteCodes,
  inviteRelayUrl,
  relayDatabaseUrl,
  relayUrl,
} from './support/test-platform.ts';

describe('onboarding', () => {
  let notARelay: Server;
  let notARelayUrl: string;
  beforeAll(async () => {
    notARelay = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>a blog</html>');
    });
    await new Promise<void>((resolve) => notARelay.listen(0, '127.0.0.1', resolve));
    const address = notARelay.address() as { port: number };
    notARelayUrl = `http://127.0.0.1:${address.port}`;
  });
  afterAll(() => new Promise<void>((resolve) => notARelay.close(() => resolve())));

  it('says what to do for a relay that is down, an address that is not a relay, and an invite code that is missing or wrong; nothing typed is lost', async () => {
    const { phones, unmount } = launch('ada');
    const app = phones[0] as Phone;
    await fillOnboarding(app, 'http://127.0.0.1:9', 'Ada');
    expect(
      await app.findByText(/Cannot reach http:\/\/127\.0\.0\.1:9\..*online/, {}, WAIT),
    ).toBeTruthy();
    expect(app.getByLabelText('Your name').props.value).toBe('Ada');

    fireEvent.changeText(app.getByLabelText('Relay address'), notARelayUrl);
    fireEvent.press(app.getByRole('button', { name: 'Create account' }));
    expect(await app.findByText(/not a privcomm relay/, {}, WAIT)).toBeTruthy();

    expect(app.queryByLabelText('Invite code')).toBeNull();
    fireEvent.changeText(app.getByLabelText('Relay address'), inviteRelayUrl());
    fireEvent.press(app.getByRole('button', { name: 'Create account' }));
    expect(await app.findByText(/only accepts people with an invite code/, {}, WAIT)).toBeTruthy();

    fireEvent.changeText(app.getByLabelText('Invite code'), 'not-a-real-code');
    fireEvent.press(app.getByRole('button', { name: 'Create account' }));
    expect(await app.findByText(/That invite code is not valid/, {}, WAIT)).toBeTruthy();
    expect(app.getByLabelText('Invite code').props.value).toBe('not-a-real-code');

    fireEvent.changeText(app.getByLabelText('Invite code'), inviteCodes()[0]);
    fireEvent.press(app.getByRole('button', { name: 'Create account' }));
    expect(await app.findByRole('header', { name: 'Chats' }, WAIT)).toBeTruthy();
    unmount();
  });
});

describe('two phones', () => {
  it('register, add each other, exchange messages with their delivery state, and show equal safety numbers', async () => {
    const { phones, unmount } = launch('alice', 'bob');
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');

    await addContact(alice, 'Bob', bobId);
    // Bob has Alice as a contact and is on his conversation list (an open chat reads at once).
    await addContact(bob, 'Alice', aliceId);
    fireEvent.press(bob.getByRole('button', { name: 'Back' }));
    await send(alice, 'Hello Bob');
    // Sent, then delivered once Bob's phone has it.
    expect(await alice.findByLabelText('You: Hello Bob, delivered', {}, WAIT)).toBeTruthy();
    expect(alice.getByLabelText('Message').props.value).toBe('');

    const row = await bob.findByLabelText('Alice, 1 unread, Alice: Hello Bob', {}, WAIT);
    fireEvent.press(row);
    expect(await bob.findByLabelText('Alice: Hello Bob', {}, WAIT)).toBeTruthy();
    // Bob has read it: Alice sees "read".
    expect(await alice.findByLabelText('You: Hello Bob, read', {}, WAIT)).toBeTruthy();

    await send(bob, 'Hi Alice');
    expect(await alice.findByLabelText('Bob: Hi Alice', {}, WAIT)).toBeTruthy();
    expect(await bob.findByLabelText('You: Hi Alice, read', {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));
    expect(await alice.findByLabelText('Bob, Bob: Hi Alice', {}, WAIT)).toBeTruthy();

    fireEvent.press(alice.getByLabelText('Bob, Bob: Hi Alice'));
    fireEvent.press(await alice.findByRole('button', { name: 'Safety number' }, WAIT));
    fireEvent.press(bob.getByRole('button', { name: 'Safety number' }));
    const [aliceSees, bobSees] = [await safetyDigits(alice), await safetyDigits(bob)];
    expect(aliceSees).toMatch(/^Safety number: (\d{5} ){11}\d{5}$/);
    expect(bobSees).toBe(aliceSees);

    fireEvent.press(alice.getByRole('button', { name: 'Mark as verified' }));
    expect(await alice.findByText("You verified Bob's safety number.", {}, WAIT)).toBeTruthy();
    unmount();
  });

  it('show typing, delete a message for everyone, and set the disappearing timer on both phones', async () => {
    const { phones, unmount } = launch('alice', 'bob');
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await addContact(alice, 'Bob', bobId);
    await addContact(bob, 'Alice', aliceId);

    fireEvent.changeText(alice.getByLabelText('Message'), 'oops, wrong');
    expect(await bob.findByText('Alice is typing…', {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Send' }));
    expect(await bob.findByLabelText('Alice: oops, wrong', {}, WAIT)).toBeTruthy();
    expect(bob.queryByText('Alice is typing…')).toBeNull();

    fireEvent(await alice.findByLabelText(/^You: oops, wrong, /, {}, WAIT), 'longPress');
    fireEvent.press(alice.getByRole('button', { name: 'Delete for everyone' }));
    expect(await bob.findByLabelText('Alice: This message was deleted', {}, WAIT)).toBeTruthy();
    expect(await alice.findByLabelText(/^You: This message was deleted/, {}, WAIT)).toBeTruthy();

    fireEvent.press(alice.getByRole('button', { name: 'Disappearing messages: Off' }));
    fireEvent.press(alice.getByRole('button', { name: '1 hour' }));
    expect(
      await alice.findByRole('button', { name: 'Disappearing messages: 1 hour' }, WAIT),
    ).toBeTruthy();
    expect(
      await bob.findByRole('button', { name: 'Disappearing messages: 1 hour' }, WAIT),
    ).toBeTruthy();
    unmount();
  });

  it('call through the relay following the call state machine: ringing, declined, then answered, connected and hung up', async () => {
    const { phones, unmount } = launch('alice', 'bob');
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await addContact(alice, 'Bob', bobId);
    await addContact(bob, 'Alice', aliceId);

    fireEvent.press(alice.getByRole('button', { name: 'Call' }));
    expect(await alice.findByRole('header', { name: 'Calling Bob…' }, WAIT)).toBeTruthy();
    expect(await bob.findByRole('header', { name: 'Alice is calling' }, WAIT)).toBeTruthy();
    fireEvent.press(bob.getByRole('button', { name: 'Decline' }));
    expect(await alice.findByText('Bob: Call declined', {}, WAIT)).toBeTruthy();
    expect(alice.queryByRole('header', { name: 'Calling Bob…' })).toBeNull();

    fireEvent.press(alice.getByRole('button', { name: 'Call' }));
    fireEvent.press(await bob.findByRole('button', { name: 'Answer' }, WAIT));
    expect(await alice.findByRole('header', { name: 'In call with Bob' }, WAIT)).toBeTruthy();
    expect(await bob.findByRole('header', { name: 'In call with Alice' }, WAIT)).toBeTruthy();
    expect(alice.getByLabelText(/^Call duration \d+:\d\d$/)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Hang up' }));
    // Not verified: relay-only, so the media went through the relay (TURN).
    expect(
      await bob.findByText('Alice: Call ended · media went through the relay', {}, WAIT),
    ).toBeTruthy();
    expect(
      await alice.findByText('Bob: Call ended · media went through the relay', {}, WAIT),
    ).toBeTruthy();
    unmount();
  });

  it('link a second phone to an account from the primary, list it and remove it', async () => {
    const { phones, unmount } = launch('primary', 'second');
    const [primary, second] = phones as [Phone, Phone];
    await onboard(primary, 'Alice');
    fireEvent.changeText(await second.findByLabelText('Relay address', {}, WAIT), relayUrl());
    fireEvent.press(second.getByRole('button', { name: 'Link to an account I already have' }));
    const shown = await second.findByLabelText(/^Link code /, {}, WAIT);
    const code = String(shown.props.accessibilityLabel).replace('Link code ', '');
    expect(code).toMatch(/^privcomm-link:/);

    fireEvent.press(primary.getByRole('button', { name: 'Devices' }));
    fireEvent.changeText(
      await primary.findByLabelText('Link code from the new device', {}, WAIT),
      'not a code',
    );
    fireEvent.press(primary.getByRole('button', { name: 'Link this device' }));
    expect(await primary.findByText(/that is not a link code/, {}, WAIT)).toBeTruthy();
    fireEvent.changeText(primary.getByLabelText('Link code from the new device'), code);
    fireEvent.press(primary.getByRole('button', { name: 'Link this device' }));
    expect(await second.findByRole('header', { name: 'Chats' }, WAIT)).toBeTruthy();
    fireEvent.press(primary.getByRole('button', { name: 'Refresh the list' }));
    expect(await primary.findByLabelText(/^Device 2, added /, {}, WAIT)).toBeTruthy();

    // The list can show the new device (its join event, or the refresh) before the primary's own
    // link request has finished: until then every action of the screen, Remove included, is
    // disabled, and a press would be ignored (a loaded machine once failed here that way).
    const remove = primary.getByRole('button', { name: 'Remove Device 2' });
    await waitFor(() => expect(remove).toBeEnabled(), WAIT);
    fireEvent.press(remove);
    await waitFor(() => {
      // A failed removal shows why in an alert: say what it says.
      const alert = primary.queryByRole('alert');
      if (alert)
        throw new Error(
          `the removal failed: ${String(within(alert).getByText(/./).props.children)}`,
        );
      expect(primary.queryByLabelText(/^Device 2, added /)).toBeNull();
    }, WAIT);
    expect(primary.getByLabelText(/^Primary device, this phone, added /)).toBeTruthy();
    unmount();
  });

  it("warns when a verified contact's identity changes, keeps the unsent message with a retry, and clears once the new number is accepted", async () => {
    const { phones, unmount } = launch('alice', 'bob', 'mallory');
    const [alice, bob, mallory] = phones as [Phone, Phone, Phone];
    await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    const malloryId = await onboard(mallory, 'Mallory');

    await addContact(alice, 'Bob', bobId);
    await send(alice, 'before');
    expect(await alice.findByLabelText('You: before, delivered', {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Safety number' }));
    fireEvent.press(await alice.findByRole('button', { name: 'Mark as verified' }, WAIT));
    expect(await alice.findByText("You verified Bob's safety number.", {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));

    // The relay (or whoever controls it) swaps Bob's keys for Mallory's.
    await swapKeys(bobId, malloryId);

    await send(alice, 'secret');
    expect(await alice.findByLabelText('You: secret, not sent', {}, WAIT)).toBeTruthy();
    expect(await alice.findByText(identityWarningText('Bob'), {}, WAIT)).toBeTruthy();
    expect(alice.getByText(/safety number changed\. Nothing was sent/)).toBeTruthy();

    fireEvent.press(alice.getByRole('button', { name: 'Safety number' }));
    expect(await alice.findByText(identityWarningText('Bob'), {}, WAIT)).toBeTruthy();
    fireEvent.press(
      alice.getByRole('button', { name: 'I have compared the new number: accept it' }),
    );
    expect(await alice.findByRole('button', { name: 'Mark as verified' }, WAIT)).toBeTruthy();
    expect(alice.queryByText(identityWarningText('Bob'))).toBeNull();

    // Back in the chat, the message that was not sent goes out again with Retry.
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));
    fireEvent.press(await alice.findByRole('button', { name: 'Retry' }, WAIT));
    expect(await alice.findByLabelText('You: secret, sent', {}, WAIT)).toBeTruthy();
    expect(alice.queryByText(/Nothing was sent/)).toBeNull();
    unmount();
  });
});

/** What a malicious relay can do: serve another account's identity and keys under Bob's id. */
const swapKeys = async (bobId: string, malloryId: string): Promise<void> => {
  const db = new pg.Client({ connectionString: relayDatabaseUrl() });
  await db.connect();
  try {
    await db.query(
      'UPDATE accounts SET identity_key = (SELECT identity_key FROM accounts WHERE id = $2) WHERE id = $1',
      [bobId, malloryId],
    );
    await db.query(
      `UPDATE devices d SET registration_id = m.registration_id, signed_prekey_id = m.signed_prekey_id,
         signed_prekey = m.signed_prekey, signed_prekey_signature = m.signed_prekey_signature,
         kem_last_resort_key_id = m.kem_last_resort_key_id, kem_last_resort_key = m.kem_last_resort_key,
         kem_last_resort_signature = m.kem_last_resort_signature
       FROM devices m WHERE d.account_id = $1 AND d.device_id = 1 AND m.account_id = $2 AND m.device_id = 1`,
      [bobId, malloryId],
    );
    await db.query('DELETE FROM one_time_prekeys WHERE account_id = $1', [bobId]);
    await db.query('DELETE FROM one_time_kem_prekeys WHERE account_id = $1', [bobId]);
  } finally {
    await db.end();
  }
};
