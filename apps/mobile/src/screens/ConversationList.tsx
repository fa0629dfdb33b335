import type { ConnectionStatus } from '@privcomm/client';
import { FlatList, Pressable, StyleSheet, Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { STATUS } from '../ui/status.ts';
import { useTheme } from '../ui/theme.ts';

export const ConversationList = () => {
  const theme = useTheme();
  const navigation = useNavigation();
  const account = useAccountStore();
  const conversations = useAccount((s) => s.conversations);
  const profile = useAccount((s) => s.profile);
  const connection = useAccount((s) => s.connection);
  return (
    <Screen
      title="Chats"
      actions={
        <>
          <Button
            label="Devices"
            kind="plain"
            hint="Linked devices of this account"
            onPress={() => navigation.push({ name: 'devices' })}
          />
          <Button
            label="Add contact"
            kind="plain"
            onPress={() => navigation.push({ name: 'add-contact' })}
          />
          <Button
            label="Settings"
            kind="plain"
            onPress={() => navigation.push({ name: 'settings' })}
          />
        </>
      }
    >
      <ConnectionLine status={connection} retryNow={() => account.client.reconnectNow()} />
      {profile ? (
        <Text
          selectable
          style={{ color: theme.muted }}
          accessibilityLabel={`Your account id ${profile.accountId}`}
        >
          You: {profile.name ?? ''} · {profile.accountId}
        </Text>
      ) : null}
      <FlatList
        data={conversations}
        keyExtractor={(c) => c.accountId}
        ListEmptyComponent={
          <Text style={{ color: theme.muted }}>
            No conversations yet. Add a contact to start one.
          </Text>
        }
        renderItem={({ item }) => {
          const last = item.lastMessage;
          const preview = last ? (last.deleted ? 'Message deleted' : last.text) : 'No messages yet';
          const state = last?.direction === 'out' ? STATUS[last.status] : undefined;
          const label = [
            item.request ? `Message request from ${item.name}` : item.name,
            item.unread > 0 ? `${item.unread} unread` : undefined,
            last ? `${last.direction === 'out' ? 'You' : item.name}: ${preview}` : preview,
            state ? state.words : undefined,
          ]
            .filter(Boolean)
            .join(', ');
          return (
            <Pressable
              accessibilityRole="button"
              accessibilityLabel={label}
              testID={`conversation-${item.accountId}`}
              onPress={() => navigation.push({ name: 'chat', accountId: item.accountId })}
              style={[styles.row, { borderBottomColor: theme.surface }]}
            >
              <View style={{ flex: 1 }}>
                <Text style={{ color: theme.text, fontWeight: '600' }}>{item.name}</Text>
                {item.request ? (
                  <Text style={{ color: theme.accent }}>Message request: not in your contacts</Text>
                ) : null}
                <Text numberOfLines={1} style={{ color: theme.muted }}>
                  {last?.direction === 'out' ? 'You: ' : ''}
                  {preview}
                  {state ? `  ${state.mark}` : ''}
                </Text>
              </View>
              {item.unread > 0 ? (
                <View style={[styles.badge, { backgroundColor: theme.accent }]}>
                  <Text style={{ color: theme.onAccent, fontWeight: '700' }}>{item.unread}</Text>
                </View>
              ) : null}
            </Pressable>
          );
        }}
      />
    </Screen>
  );
};

/**
 * The core's connection as one line: it reconnects by itself (with backoff); "Retry now" only
 * shortens the wait. A device the relay refused for good says why and what to do.
 */
const ConnectionLine = ({
  status,
  retryNow,
}: {
  status: ConnectionStatus;
  retryNow: () => void;
}) => {
  const theme = useTheme();
  switch (status.state) {
    case 'online':
      return (
        <Text accessibilityLiveRegion="polite" style={{ color: theme.muted }}>
          Connected to the relay
        </Text>
      );
    case 'connecting':
      return (
        <Text accessibilityLiveRegion="polite" style={{ color: theme.muted }}>
          Connecting to the relay…
        </Text>
      );
    case 'offline': {
      const seconds =
        status.retryInMs === undefined
          ? undefined
          : Math.max(1, Math.round(status.retryInMs / 1000));
      return (
        <View style={{ gap: 8 }}>
          <Notice
            kind="warning"
            text={`Not connected to the relay${status.error ? `: ${status.error.message}` : ''}. ${
              seconds === undefined ? 'Trying again' : `Trying again in ${seconds} s`
            }; messages wait on the relay and in this phone's outbox meanwhile.`}
          />
          <Button label="Retry now" kind="plain" onPress={retryNow} />
        </View>
      );
    }
    case 'stopped':
      return (
        <Notice
          text={
            status.error
              ? explain(status.error)
              : 'The relay no longer accepts this device. Restart the app to try again.'
          }
        />
      );
  }
};

const styles = StyleSheet.create({
  row: {
    flexDirection: 'row',
    alignItems: 'center',
    paddingVertical: 12,
    borderBottomWidth: 1,
    gap: 8,
  },
  badge: { minWidth: 24, paddingHorizontal: 6, borderRadius: 12, alignItems: 'center' },
});
