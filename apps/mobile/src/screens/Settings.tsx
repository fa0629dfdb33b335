import { PRIMARY_DEVICE_ID } from '@privcomm/wire';
import type { ClientSettings } from '@privcomm/client';
import { useState } from 'react';
import { ScrollView, Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Notice, Screen, Toggle } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { BlockedAccounts } from './BlockedAccounts.tsx';
import { useNavigation } from '../ui/navigation.tsx';
import { useTheme } from '../ui/theme.ts';

/**
 * The core's settings (it keeps and honours them) and the end of this device or account. The
 * primary deletes the account; a linked device removes itself. Both ask for confirmation.
 */
export const Settings = ({ onDeleted }: { onDeleted: (what: 'device' | 'account') => void }) => {
  const theme = useTheme();
  const navigation = useNavigation();
  const { client } = useAccountStore();
  const settings = useAccount((s) => s.settings);
  const profile = useAccount((s) => s.profile);
  const [error, setError] = useState<string | undefined>();
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const primary = profile?.deviceId === PRIMARY_DEVICE_ID;

  const change = (key: keyof ClientSettings) => (value: boolean) => {
    setError(undefined);
    client.updateSettings({ [key]: value }).catch((caught: unknown) => setError(explain(caught)));
  };

  const remove = async (): Promise<void> => {
    if (!profile) return;
    setBusy(true);
    setError(undefined);
    try {
      if (primary) await client.deleteAccount();
      else await client.removeDevice(profile.deviceId);
      // The app then erases this phone's copy (AppRoot: wipeDevice) and goes back to onboarding.
      onDeleted(primary ? 'account' : 'device');
    } catch (caught) {
      setError(explain(caught));
      setBusy(false);
    }
  };

  return (
    <Screen
      title="Settings"
      actions={<Button label="Back" kind="plain" onPress={navigation.back} />}
    >
      <ScrollView contentContainerStyle={{ gap: 8 }}>
        <Toggle
          label="Read receipts"
          description="Tell your contacts when you have read their messages. Off, they only see that it was delivered."
          value={settings.readReceipts}
          onChange={change('readReceipts')}
        />
        <Toggle
          label="Typing indicators"
          description="Show your contacts when you are typing, and see when they are. Off, neither."
          value={settings.typingIndicators}
          onChange={change('typingIndicators')}
        />
        <Toggle
          label="Relay-only calls"
          description="Calls always go through the relay, so nobody you call learns this phone's network address. They always do with contacts you have not verified."
          value={settings.relayOnlyCalls}
          onChange={change('relayOnlyCalls')}
        />
        {error ? <Notice text={error} /> : null}
        <BlockedAccounts />
        <View style={{ gap: 8, marginTop: 16 }}>
          <Text style={{ color: theme.text, fontWeight: '600' }}>
            {primary ? 'Delete the account' : 'Remove this device'}
          </Text>
          {confirming ? (
            <>
              <Notice
                kind="warning"
                text={
                  primary
                    ? "Delete the account for good? Its linked devices stop working, messages waiting on the relay are lost, your contacts can no longer reach you, and this phone's messages, contacts and keys are erased. This cannot be undone."
                    : 'Remove this phone from the account? It stops receiving messages and its messages, contacts and keys are erased; your other devices keep working. To use it again, link it again.'
                }
              />
              <Button
                label={primary ? 'Yes, delete the account' : 'Yes, remove this device'}
                onPress={() => void remove()}
                disabled={busy}
              />
              <Button label="Cancel" kind="plain" onPress={() => setConfirming(false)} />
            </>
          ) : (
            <Button
              label={primary ? 'Delete the account…' : 'Remove this device…'}
              kind="plain"
              hint="Asks for confirmation first"
              onPress={() => setConfirming(true)}
            />
          )}
        </View>
      </ScrollView>
    </Screen>
  );
};
