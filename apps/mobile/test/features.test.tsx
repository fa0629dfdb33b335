import { act, fireEvent, waitFor } from '@testing-library/react-native';
import { NodeCallMedia, toneSource } from '@privcomm/engine-node';
import { CallError } from '@privcomm/client';
import { CAMERA_REFUSED_HERE } from '../src/screens/AddContact.tsx';
import { MICROPHONE_REFUSED } from '../src/screens/CallScreen.tsx';
import { addContact, launch, onboard, send, WAIT, type Phone } from './support/phones.tsx';
import { drivenScanner, restartableRelay, restartableRelayUrl } from './support/test-platform.ts';

const openChat = async (app: Phone, label: string | RegExp): Promise<void> => {
  fireEvent.press(await app.findByLabelText(label, {}, WAIT));
};

describe('settings', () => {
  it('read receipts off on one phone: the other sees "delivered", never "read"', async () => {
    const { phones, unmount } = launch('alice', 'bob');
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await addContact(alice, 'Bob', bobId);
    await addContact(bob, 'Alice', aliceId);
    fireEvent.press(bob.getByRole('button', { name: 'Back' }));

    fireEvent.press(bob.getByRole('button', { name: 'Settings' }));
    const receipts = await bob.findByLabelText('Read receipts', {}, WAIT);
    expect(receipts.props.accessibilityState).toEqual({ checked: true });
    fireEvent(receipts, 'valueChange', false);
    // The switch shows what the core stored.
    await waitFor(
      () =>
        expect(bob.getByLabelText('Read receipts').props.accessibilityState).toEqual({
          checked: false,
        }),
      WAIT,
    );
    fireEvent.press(bob.getByRole('button', { name: 'Back' }));

    await send(alice, 'Hello Bob');
    expect(await alice.findByLabelText('You: Hello Bob, delivered', {}, WAIT)).toBeTruthy();
    await openChat(bob, 'Alice, 1 unread, Alice: Hello Bob');
    expect(await bob.findByLabelText('Alice: Hello Bob', {}, WAIT)).toBeTruthy();
    fireEvent.press(bob.getByRole('button', { name: 'Back' }));
    // Read on Bob's phone (no unread left)...
    expect(await bob.findByLabelText('Alice, Alice: Hello Bob', {}, WAIT)).toBeTruthy();
    // ...and a reply sent after it reaches Alice: a read receipt would have come before it.
    await openChat(bob, 'Alice, Alice: Hello Bob');
    await send(bob, 'read it');
    expect(await alice.findByLabelText('Bob: read it', {}, WAIT)).toBeTruthy();
    expect(alice.getByLabelText('You: Hello Bob, delivered')).toBeTruthy();
    expect(alice.queryByLabelText('You: Hello Bob, read')).toBeNull();
    unmount();
  });
});

describe('safety numbers by QR code', () => {
  it("scanning the other phone's code verifies; another code, or a refused camera, says what to do", async () => {
    const aliceScanner = drivenScanner();
    const { phones, unmount } = launch(
      { name: 'alice', options: { scanner: aliceScanner.scanner } },
      { name: 'bob', options: { scanner: drivenScanner(false).scanner } },
    );
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await addContact(alice, 'Bob', bobId);
    await send(alice, 'hello');
    await addContact(bob, 'Alice', aliceId);
    expect(await bob.findByLabelText('Alice: hello', {}, WAIT)).toBeTruthy();

    fireEvent.press(bob.getByRole('button', { name: 'Safety number' }));
    const bobsCode = await bob.findByRole(
      'image',
      { name: 'QR code of your safety number with Alice' },
      WAIT,
    );
    // Bob's camera is refused: his screen says where to allow it, and what to do instead.
    fireEvent.press(bob.getByRole('button', { name: "Scan Alice's code" }));
    expect(
      await bob.findByText(
        /^privcomm may not use the camera.*Or compare the 60 digits with Alice instead\.$/,
        {},
        WAIT,
      ),
    ).toBeTruthy();

    fireEvent.press(alice.getByRole('button', { name: 'Safety number' }));
    fireEvent.press(await alice.findByRole('button', { name: "Scan Bob's code" }, WAIT));
    expect(await alice.findByRole('header', { name: "Scan Bob's code" }, WAIT)).toBeTruthy();
    await waitFor(() => expect(aliceScanner.showing).toBe(true), WAIT);
    act(() => aliceScanner.scan('not the safety number'));
    expect(
      await alice.findByText(/^The scanned code does not match this safety number/, {}, WAIT),
    ).toBeTruthy();
    expect(alice.getByRole('button', { name: 'Mark as verified' })).toBeTruthy();

    fireEvent.press(alice.getByRole('button', { name: "Scan Bob's code" }));
    await alice.findByRole('header', { name: "Scan Bob's code" }, WAIT);
    await waitFor(() => expect(aliceScanner.showing).toBe(true), WAIT);
    // The camera reads the code many times a second: only the first read counts.
    act(() => {
      aliceScanner.scan(String(bobsCode.props.accessibilityValue.text));
      aliceScanner.scan('a later read of something else');
    });
    expect(await alice.findByText("You verified Bob's safety number.", {}, WAIT)).toBeTruthy();
    expect(alice.queryByText(/^The scanned code does not match this safety number/)).toBeNull();
    unmount();
  });
});

describe('adding contacts', () => {
  it('by contact link and by scanning the QR code; a bad link and a refused camera say what to do', async () => {
    const carolScanner = drivenScanner();
    const { phones, unmount } = launch(
      'alice',
      { name: 'bob', options: { scanner: drivenScanner(false).scanner } },
      { name: 'carol', options: { scanner: carolScanner.scanner } },
    );
    const [alice, bob, carol] = phones as [Phone, Phone, Phone];
    await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await onboard(carol, 'Carol');

    fireEvent.press(bob.getByRole('button', { name: 'Add contact' }));
    const shown = await bob.findByLabelText(/^Your contact link /, {}, WAIT);
    const link = String(shown.props.accessibilityLabel).replace('Your contact link ', '');
    expect(link).toMatch(new RegExp(`^privcomm://contact/${bobId}\\?relay=http.*#Bob$`));
    const qr = bob.getByRole('image', { name: 'QR code of your contact link' });
    expect(qr.props.accessibilityValue).toEqual({ text: link });
    // Bob's camera is refused: scanning says where to allow it.
    fireEvent.press(bob.getByRole('button', { name: 'Scan a QR code' }));
    expect(await bob.findByText(CAMERA_REFUSED_HERE, {}, WAIT)).toBeTruthy();

    fireEvent.press(alice.getByRole('button', { name: 'Add contact' }));
    fireEvent.changeText(alice.getByLabelText('Contact link'), 'https://example.org/bob');
    fireEvent.press(alice.getByRole('button', { name: 'Add from link' }));
    expect(
      await alice.findByText(
        /^That is not a privcomm contact link: it should start with/,
        {},
        WAIT,
      ),
    ).toBeTruthy();
    fireEvent.changeText(alice.getByLabelText('Contact link'), link);
    fireEvent.press(alice.getByRole('button', { name: 'Add from link' }));
    expect(await alice.findByRole('header', { name: 'Bob' }, WAIT)).toBeTruthy();

    fireEvent.press(carol.getByRole('button', { name: 'Add contact' }));
    fireEvent.press(carol.getByRole('button', { name: 'Scan a QR code' }));
    expect(
      await carol.findByRole('header', { name: "Scan a contact's QR code" }, WAIT),
    ).toBeTruthy();
    act(() => carolScanner.scan(String(qr.props.accessibilityValue.text)));
    expect(await carol.findByRole('header', { name: 'Bob' }, WAIT)).toBeTruthy();
    await send(carol, 'found you');
    expect(await carol.findByLabelText('You: found you, delivered', {}, WAIT)).toBeTruthy();
    unmount();
  });

  it('a message from someone not in the contacts is a request: accepted, or blocked, then unblocked in Settings', async () => {
    const { phones, unmount } = launch('alice', 'bob', 'mallory');
    const [alice, bob, mallory] = phones as [Phone, Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    const malloryId = await onboard(mallory, 'Mallory');

    await addContact(mallory, 'Alice', aliceId);
    await send(mallory, 'buy my stuff');
    await openChat(
      alice,
      `Message request from ${malloryId}, 1 unread, ${malloryId}: buy my stuff`,
    );
    expect(await alice.findByText(/This account is not in your contacts/, {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Block' }));
    expect(await alice.findByRole('header', { name: 'Chats' }, WAIT)).toBeTruthy();
    expect(alice.queryByLabelText(new RegExp(malloryId))).toBeNull();
    await send(mallory, 'again');
    expect(await mallory.findByLabelText('You: again, sent', {}, WAIT)).toBeTruthy();

    // Bob writes after Mallory's second message: once Bob's request shows, Mallory's was handled.
    await addContact(bob, 'Alice', aliceId);
    await send(bob, 'hi, it is Bob');
    await openChat(alice, `Message request from ${bobId}, 1 unread, ${bobId}: hi, it is Bob`);
    expect(alice.queryByLabelText(new RegExp(malloryId))).toBeNull();
    fireEvent.changeText(alice.getByLabelText('Name for this contact'), 'Bob');
    fireEvent.press(alice.getByRole('button', { name: 'Accept' }));
    expect(await alice.findByRole('header', { name: 'Bob' }, WAIT)).toBeTruthy();
    expect(alice.queryByText(/This account is not in your contacts/)).toBeNull();
    await send(alice, 'hello Bob');
    expect(await bob.findByLabelText('Alice: hello Bob', {}, WAIT)).toBeTruthy();

    // Settings lists Mallory as blocked; unblocked, what Mallory sends arrives again.
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));
    fireEvent.press(alice.getByRole('button', { name: 'Settings' }));
    expect(await alice.findByLabelText(`Blocked: ${malloryId}`, {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: `Unblock ${malloryId}` }));
    expect(await alice.findByText('You have not blocked anyone.', {}, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));
    await send(mallory, 'let me explain');
    expect(
      await alice.findByLabelText(
        `Message request from ${malloryId}, 1 unread, ${malloryId}: let me explain`,
        {},
        WAIT,
      ),
    ).toBeTruthy();
    unmount();
  });
});

describe('calls', () => {
  it('mute toggles the microphone track, the speaker goes through the platform, and a refused microphone says what to do', async () => {
    const medias: NodeCallMedia[] = [];
    const speaker: boolean[] = [];
    const { phones, unmount } = launch(
      {
        name: 'alice',
        options: {
          media: () => {
            const media = new NodeCallMedia(toneSource(440));
            medias.push(media);
            return media;
          },
          audioRoute: { setSpeaker: (on) => void speaker.push(on) },
        },
      },
      {
        name: 'bob',
        options: {
          // What the device's platform throws when the permission is refused (device.ts).
          media: () => {
            throw new CallError('MICROPHONE_DENIED', 'the microphone permission was refused');
          },
        },
      },
    );
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice');
    const bobId = await onboard(bob, 'Bob');
    await addContact(alice, 'Bob', bobId);
    await addContact(bob, 'Alice', aliceId);

    fireEvent.press(alice.getByRole('button', { name: 'Call' }));
    expect(await alice.findByRole('header', { name: 'Calling Bob…' }, WAIT)).toBeTruthy();
    // Bob's phone rings once the offer is out, after Alice's microphone was opened.
    expect(await bob.findByRole('header', { name: 'Alice is calling' }, WAIT)).toBeTruthy();
    fireEvent.press(alice.getByRole('button', { name: 'Mute' }));
    expect(await alice.findByRole('button', { name: 'Unmute' }, WAIT)).toBeTruthy();
    expect(medias).toHaveLength(1);
    expect(medias[0]?.track.enabled).toBe(false);
    fireEvent.press(alice.getByRole('button', { name: 'Unmute' }));
    expect(await alice.findByRole('button', { name: 'Mute' }, WAIT)).toBeTruthy();
    expect(medias[0]?.track.enabled).toBe(true);
    fireEvent.press(alice.getByRole('button', { name: 'Speaker on' }));
    expect(await alice.findByRole('button', { name: 'Speaker off' }, WAIT)).toBeTruthy();
    expect(speaker).toEqual([true]);

    fireEvent.press(await bob.findByRole('button', { name: 'Answer' }, WAIT));
    expect(await bob.findByText(`Alice: ${MICROPHONE_REFUSED}`, {}, WAIT)).toBeTruthy();
    expect(await alice.findByText('Bob: The call could not connect', {}, WAIT)).toBeTruthy();
    // The call is over: the speaker is switched back off.
    expect(speaker).toEqual([true, false]);
    unmount();
  });
});

describe('connection', () => {
  it('reconnects by itself after the relay restarts, and what was sent meanwhile arrives', async () => {
    const url = restartableRelayUrl();
    const { phones, unmount } = launch('alice', 'bob');
    const [alice, bob] = phones as [Phone, Phone];
    const aliceId = await onboard(alice, 'Alice', url);
    const bobId = await onboard(bob, 'Bob', url);
    await addContact(alice, 'Bob', bobId);
    await addContact(bob, 'Alice', aliceId);
    fireEvent.press(alice.getByRole('button', { name: 'Back' }));
    expect(await alice.findByText('Connected to the relay', {}, WAIT)).toBeTruthy();

    restartableRelay('stop');
    expect(await alice.findByText(/^Not connected to the relay/, {}, WAIT)).toBeTruthy();
    restartableRelay('start');
    // Nothing pressed: the core's reconnection brings both phones back.
    expect(await alice.findByText('Connected to the relay', {}, WAIT)).toBeTruthy();
    await send(bob, 'after the restart');
    expect(
      await alice.findByLabelText('Bob, 1 unread, Bob: after the restart', {}, WAIT),
    ).toBeTruthy();
    unmount();
  });
});
