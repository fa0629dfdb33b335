import type { Contact } from '@privcomm/client';
import { useState } from 'react';
import { ScrollView, Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Field, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { QrCode } from '../ui/QrCode.tsx';
import { useTheme } from '../ui/theme.ts';
import { CAMERA_REFUSED, QrScanScreen, useQrScan } from '../ui/useQrScan.tsx';

/** What a refused camera shows here. */
export const CAMERA_REFUSED_HERE = `${CAMERA_REFUSED} Or paste the contact link instead.`;

/**
 * Adds a contact by account id, by contact link (typed or pasted) or by scanning the QR code of
 * one; shows this account's own link and QR code to be added. The core parses and checks links.
 */
export const AddContact = () => {
  const theme = useTheme();
  const navigation = useNavigation();
  const account = useAccountStore();
  const profile = useAccount((s) => s.profile);
  const [name, setName] = useState('');
  const [accountId, setAccountId] = useState('');
  const [link, setLink] = useState('');
  const [error, setError] = useState<string | undefined>();

  const added = async (work: () => Promise<Contact>): Promise<void> => {
    setError(undefined);
    try {
      const contact = await work();
      await account.refresh();
      navigation.back();
      navigation.push({ name: 'chat', accountId: contact.accountId });
    } catch (caught) {
      setError(explain(caught));
    }
  };

  const addFromLink = (text: string): Promise<void> =>
    added(() => account.client.addContactFromLink(text, name.trim() || undefined));

  const scan = useQrScan((data) => {
    setLink(data);
    void addFromLink(data);
  });

  if (scan.scanning)
    return (
      <QrScanScreen
        scan={scan}
        title="Scan a contact's QR code"
        instructions="Point the camera at the QR code on your contact's Add contact screen."
      />
    );

  let ownLink: string | undefined;
  try {
    ownLink = profile ? account.client.contactLink() : undefined;
  } catch {
    ownLink = undefined;
  }

  return (
    <Screen
      title="Add a contact"
      actions={<Button label="Back" kind="plain" onPress={navigation.back} />}
    >
      <ScrollView contentContainerStyle={{ gap: 12 }} keyboardShouldPersistTaps="handled">
        <Field label="Contact's name" value={name} onChangeText={setName} />
        <Field
          label="Contact link"
          value={link}
          onChangeText={setLink}
          autoCapitalize="none"
          autoCorrect={false}
          placeholder="privcomm://contact/…"
        />
        <Button
          label="Add from link"
          onPress={() => void addFromLink(link)}
          disabled={link.trim() === ''}
        />
        {scan.available ? (
          <Button
            label="Scan a QR code"
            kind="plain"
            hint="Opens the camera to scan your contact's QR code"
            onPress={() => {
              setError(undefined);
              void scan.start();
            }}
          />
        ) : null}
        <Field
          label="Contact's account id"
          value={accountId}
          onChangeText={setAccountId}
          autoCapitalize="none"
          autoCorrect={false}
          placeholder="xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
        />
        {error ? <Notice text={error} /> : null}
        {scan.refused ? <Notice text={CAMERA_REFUSED_HERE} /> : null}
        <Button
          label="Add"
          onPress={() => void added(() => account.client.addContact(name.trim(), accountId.trim()))}
          disabled={name.trim() === '' || accountId.trim() === ''}
        />
        {ownLink && profile ? (
          <View style={{ gap: 8 }}>
            <Text style={{ color: theme.text, fontWeight: '600' }}>
              To be added: show this QR code, or share your link
            </Text>
            <QrCode value={ownLink} label="QR code of your contact link" />
            <Text
              selectable
              style={{ color: theme.muted }}
              accessibilityLabel={`Your contact link ${ownLink}`}
            >
              {ownLink}
            </Text>
            <Text selectable style={{ color: theme.muted }}>
              Your account id, for your contacts: {profile.accountId}
            </Text>
          </View>
        ) : null}
      </ScrollView>
    </Screen>
  );
};
