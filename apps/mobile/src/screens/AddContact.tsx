import { useState } from 'react';
import { Text } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Field, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { useTheme } from '../ui/theme.ts';

/** Adds a contact by account id (the core checks it); shows this account's id to share. */
export const AddContact = () => {
  const theme = useTheme();
  const navigation = useNavigation();
  const account = useAccountStore();
  const profile = useAccount((s) => s.profile);
  const [name, setName] = useState('');
  const [accountId, setAccountId] = useState('');
  const [error, setError] = useState<string | undefined>();

  const add = async (): Promise<void> => {
    setError(undefined);
    try {
      const contact = await account.client.addContact(name.trim(), accountId.trim());
      await account.refresh();
      navigation.back();
      navigation.push({ name: 'chat', accountId: contact.accountId });
    } catch (caught) {
      setError(explain(caught));
    }
  };

  return (
    <Screen
      title="Add a contact"
      actions={<Button label="Back" kind="plain" onPress={navigation.back} />}
    >
      <Field label="Contact's name" value={name} onChangeText={setName} />
      <Field
        label="Contact's account id"
        value={accountId}
        onChangeText={setAccountId}
        autoCapitalize="none"
        autoCorrect={false}
        placeholder="xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
      />
      {error ? <Notice text={error} /> : null}
      <Button
        label="Add"
        onPress={() => void add()}
        disabled={name.trim() === '' || accountId.trim() === ''}
      />
      {profile ? (
        <Text selectable style={{ color: theme.muted }}>
          Your account id, for your contacts: {profile.accountId}
        </Text>
      ) : null}
    </Screen>
  );
};
