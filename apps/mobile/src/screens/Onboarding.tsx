import { ClientError, type PrivcommClient } from '@privcomm/client';
import { useState } from 'react';
import { ScrollView, Text } from 'react-native';
import { openClient, type DeviceParts } from '../platform/client-factory.ts';
import { Button, Field, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useTheme } from '../ui/theme.ts';

/** A relay address as typed: a missing scheme means https. */
const normaliseRelayUrl = (typed: string): string => {
  const trimmed = typed.trim();
  return /^https?:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`;
};

/**
 * First start: the relay's address and a display name, and an invite code once the relay says
 * it needs one. The core registers; its error codes become what to do. Nothing typed is cleared.
 */
export const Onboarding = ({
  parts,
  notice,
  onRegistered,
}: {
  parts: DeviceParts;
  /** Why the app is back here (an account deleted, this device removed). */
  notice?: string;
  onRegistered: (client: PrivcommClient) => void;
}) => {
  const theme = useTheme();
  const [relayUrl, setRelayUrl] = useState('');
  const [name, setName] = useState('');
  const [inviteCode, setInviteCode] = useState('');
  const [inviteNeeded, setInviteNeeded] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [linkCode, setLinkCode] = useState<string | undefined>();

  /** A second device of an existing account: show a link code, wait for the primary. */
  const link = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    const url = normaliseRelayUrl(relayUrl);
    try {
      const client = await openClient(parts, url);
      const started = await client.startLink();
      setLinkCode(started.linkCode);
      await started.done;
      onRegistered(client);
    } catch (caught) {
      setLinkCode(undefined);
      setError(explain(caught, url));
      setBusy(false);
    }
  };

  const register = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    const url = normaliseRelayUrl(relayUrl);
    try {
      const client = await openClient(parts, url);
      const code = inviteCode.trim();
      await client.register({ name: name.trim(), ...(code === '' ? {} : { inviteCode: code }) });
      onRegistered(client);
    } catch (caught) {
      if (caught instanceof ClientError && caught.relayCode?.startsWith('INVITE_'))
        setInviteNeeded(true);
      setError(explain(caught, url));
      setBusy(false);
    }
  };

  return (
    <Screen title="Welcome to privcomm">
      <ScrollView contentContainerStyle={{ gap: 12 }} keyboardShouldPersistTaps="handled">
        {notice ? <Notice kind="info" text={notice} /> : null}
        <Text style={{ color: theme.text }}>
          Your messages go through a relay you trust. It only ever sees encrypted envelopes.
        </Text>
        <Field
          label="Relay address"
          value={relayUrl}
          onChangeText={setRelayUrl}
          placeholder="https://relay.example.org"
          autoCapitalize="none"
          autoCorrect={false}
          keyboardType="url"
        />
        <Field
          label="Your name"
          value={name}
          onChangeText={setName}
          placeholder="Shown to your contacts' devices"
        />
        {inviteNeeded ? (
          <Field
            label="Invite code"
            value={inviteCode}
            onChangeText={setInviteCode}
            autoCapitalize="none"
            autoCorrect={false}
          />
        ) : null}
        {error ? <Notice text={error} /> : null}
        <Button
          label={busy && !linkCode ? 'Creating your account…' : 'Create account'}
          onPress={() => void register()}
          disabled={busy || relayUrl.trim() === '' || name.trim() === ''}
        />
        {linkCode ? (
          <>
            <Notice
              kind="info"
              text="On your primary phone, open Devices and enter this link code. This phone waits for it."
            />
            <Text
              selectable
              accessibilityLabel={`Link code ${linkCode}`}
              style={{ color: theme.text }}
            >
              {linkCode}
            </Text>
          </>
        ) : (
          <Button
            label="Link to an account I already have"
            kind="plain"
            hint="Makes this phone a linked device of the account on your other phone"
            onPress={() => void link()}
            disabled={busy || relayUrl.trim() === ''}
          />
        )}
      </ScrollView>
    </Screen>
  );
};
