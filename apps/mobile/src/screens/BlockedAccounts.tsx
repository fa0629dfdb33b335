import type { AccountId } from '@privcomm/client';
import { useState } from 'react';
import { Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Notice } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useTheme } from '../ui/theme.ts';

/**
 * The accounts this device blocked (the core's list), each with Unblock: from then on what they
 * send arrives again (as a message request unless they are a contact). Part of Settings.
 */
export const BlockedAccounts = () => {
  const theme = useTheme();
  const account = useAccountStore();
  const blocked = useAccount((s) => s.blocked);
  const contacts = useAccount((s) => s.contacts);
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState<AccountId | undefined>();

  const nameOf = (accountId: AccountId): string =>
    contacts.find((c) => c.accountId === accountId)?.name ?? accountId;

  const unblock = async (accountId: AccountId): Promise<void> => {
    setBusy(accountId);
    setError(undefined);
    try {
      await account.client.unblock(accountId);
      await account.refresh();
    } catch (caught) {
      setError(explain(caught));
    } finally {
      setBusy(undefined);
    }
  };

  return (
    <View style={{ gap: 8, marginTop: 16 }}>
      <Text accessibilityRole="header" style={{ color: theme.text, fontWeight: '600' }}>
        Blocked accounts
      </Text>
      {blocked.length === 0 ? (
        <Text style={{ color: theme.muted }}>You have not blocked anyone.</Text>
      ) : (
        blocked.map((accountId) => {
          const name = nameOf(accountId);
          return (
            <View
              key={accountId}
              accessible
              accessibilityLabel={`Blocked: ${name}`}
              style={{ flexDirection: 'row', flexWrap: 'wrap', alignItems: 'center', gap: 8 }}
            >
              <Text style={{ color: theme.text, flexShrink: 1 }} selectable>
                {name}
              </Text>
              <Button
                label={`Unblock ${name}`}
                kind="plain"
                hint="What this account sends arrives again"
                disabled={busy !== undefined}
                onPress={() => void unblock(accountId)}
              />
            </View>
          );
        })
      )}
      {error ? <Notice text={error} /> : null}
    </View>
  );
};
