/**
 * Phones for the app's tests: several app instances side by side in one render, each with its
 * own platform (engine, store, secrets), seen through queries scoped to its own subtree; and the
 * steps every test repeats (onboarding, adding a contact, sending).
 */
import { fireEvent, render, within } from '@testing-library/react-native';
import { View } from 'react-native';
import { AppRoot } from '../../src/AppRoot.tsx';
import { relayUrl, testPlatform, type TestPlatformOptions } from './test-platform.ts';

/** Real relay, real libsignal: answers take a moment on a loaded machine. */
export const WAIT = { timeout: 30_000 };

export type Phone = ReturnType<typeof within>;

/** A phone's name, or its name and what its platform provides differently. */
export type PhoneSpec = string | { readonly name: string; readonly options: TestPlatformOptions };

export const launch = (...specs: PhoneSpec[]): { phones: Phone[]; unmount: () => void } => {
  const named = specs.map((spec) =>
    typeof spec === 'string' ? { name: spec, options: {} } : spec,
  );
  const result = render(
    <View>
      {named.map(({ name, options }) => (
        <View key={name} testID={`phone-${name}`}>
          <AppRoot platform={testPlatform(options)} />
        </View>
      ))}
    </View>,
  );
  return {
    phones: named.map(({ name }) => within(result.getByTestId(`phone-${name}`))),
    unmount: () => result.unmount(),
  };
};

export const fillOnboarding = async (app: Phone, url: string, name: string): Promise<void> => {
  fireEvent.changeText(await app.findByLabelText('Relay address', {}, WAIT), url);
  fireEvent.changeText(app.getByLabelText('Your name'), name);
  fireEvent.press(app.getByRole('button', { name: 'Create account' }));
};

/** Registers through the onboarding screen; returns the account id the app shows. */
export const onboard = async (app: Phone, name: string, url = relayUrl()): Promise<string> => {
  await fillOnboarding(app, url, name);
  const own = await app.findByLabelText(/^Your account id /, {}, WAIT);
  return String(own.props.accessibilityLabel).replace('Your account id ', '');
};

export const addContact = async (app: Phone, name: string, accountId: string): Promise<void> => {
  fireEvent.press(app.getByRole('button', { name: 'Add contact' }));
  fireEvent.changeText(app.getByLabelText("Contact's name"), name);
  fireEvent.changeText(app.getByLabelText("Contact's account id"), accountId);
  fireEvent.press(app.getByRole('button', { name: 'Add' }));
  await app.findByRole('header', { name }, WAIT); // the chat with them opens
};

export const send = async (app: Phone, text: string): Promise<void> => {
  fireEvent.changeText(app.getByLabelText('Message'), text);
  fireEvent.press(app.getByRole('button', { name: 'Send' }));
};

export const safetyDigits = async (app: Phone): Promise<string> => {
  const digits = await app.findByTestId('safety-digits', {}, WAIT);
  return String(digits.props.accessibilityLabel);
};
