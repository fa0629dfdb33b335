import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fireEvent, render, within } from '@testing-library/react-native';
import { openNodeEngine } from '@privcomm/engine-node';
import { AppRoot } from '../src/AppRoot.tsx';
import { openAppStore } from '../src/platform/expo-sqlite-driver.ts';
import { AUTH_KEY_ENTRY } from '../src/platform/secure-signer.ts';
import { addContact, launch, onboard, send, WAIT, type Phone } from './support/phones.tsx';
import { betterSqlite, ENGINE_FILE, STORE_FILE, testPlatform } from './support/test-platform.ts';

/** One phone whose engine and store are files in `dir`, rendered (again) on its own. */
const phoneOn = (platform: ReturnType<typeof testPlatform>) => {
  const result = render(<AppRoot platform={platform} />);
  return { app: within(result.root) as Phone, unmount: () => result.unmount() };
};

const deleteFromSettings = async (app: Phone, confirm: string): Promise<void> => {
  fireEvent.press(app.getByRole('button', { name: 'Settings' }));
  fireEvent.press(await app.findByRole('button', { name: /…$/ }, WAIT));
  fireEvent.press(app.getByRole('button', { name: confirm }));
};

describe('ending the account or this device erases the phone', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const newDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'privcomm-wipe-'));
    dirs.push(dir);
    return dir;
  };

  it('deleting the account: back to onboarding, and a restart finds no account, message or key', async () => {
    const dir = newDir();
    const platform = testPlatform({ dir });
    const others = launch('bob');
    const [bob] = others.phones as [Phone];
    const bobId = await onboard(bob, 'Bob');

    const first = phoneOn(platform);
    const aliceId = await onboard(first.app, 'Alice');
    await addContact(first.app, 'Bob', bobId);
    await send(first.app, 'remember this sentence');
    expect(
      await first.app.findByLabelText('You: remember this sentence, delivered', {}, WAIT),
    ).toBeTruthy();
    fireEvent.press(first.app.getByRole('button', { name: 'Back' }));
    const loginKey = platform.secrets.entries.get(AUTH_KEY_ENTRY);
    expect(loginKey).toBeDefined();
    // Test the test: before the wipe, the files hold the message and the account.
    const files = (): Buffer =>
      Buffer.concat([ENGINE_FILE, STORE_FILE].map((name) => readFileSync(join(dir, name))));
    expect(files().includes('remember this sentence')).toBe(true);
    expect(files().includes(aliceId)).toBe(true);

    await deleteFromSettings(first.app, 'Yes, delete the account');
    expect(
      await first.app.findByText(
        /^The account was deleted, and this phone's messages, contacts and keys were erased/,
        {},
        WAIT,
      ),
    ).toBeTruthy();
    expect(first.app.getByLabelText('Relay address')).toBeTruthy();
    expect(files().includes('remember this sentence')).toBe(false);
    expect(files().includes(aliceId)).toBe(false);
    expect(files().includes(bobId)).toBe(false);
    // A new login key, so that a new account is not tied to the old one by it.
    expect(platform.secrets.entries.get(AUTH_KEY_ENTRY)).not.toBe(loginKey);
    first.unmount();

    // A restart on the same files: onboarding, and the engine and the store are empty.
    const again = phoneOn(platform);
    expect(await again.app.findByLabelText('Relay address', {}, WAIT)).toBeTruthy();
    expect(again.app.queryByText(/was deleted/)).toBeNull();
    again.unmount();
    const engine = await openNodeEngine(join(dir, ENGINE_FILE));
    const store = await openAppStore(betterSqlite(join(dir, STORE_FILE)));
    try {
      expect(await engine.localIdentity()).toBeUndefined();
      expect(await store.profile()).toBeUndefined();
      expect(await store.contacts()).toEqual([]);
      expect(await store.conversationIds()).toEqual([]);
    } finally {
      await engine.close();
      await store.close();
    }
    others.unmount();
  });

  it('a wipe cut short after the engine: the next start finishes it and shows onboarding', async () => {
    const dir = newDir();
    const platform = testPlatform({ dir });
    const first = phoneOn(platform);
    await onboard(first.app, 'Carol');
    first.unmount();
    // As if the app died inside PrivcommClient.wipe, between the engine and the store.
    const engine = await openNodeEngine(join(dir, ENGINE_FILE));
    await engine.wipe();

    const again = phoneOn(platform);
    expect(await again.app.findByLabelText('Relay address', {}, WAIT)).toBeTruthy();
    again.unmount();
    const store = await openAppStore(betterSqlite(join(dir, STORE_FILE)));
    try {
      expect(await store.profile()).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
