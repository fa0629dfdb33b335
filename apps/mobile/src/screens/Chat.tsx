import { ClientError, EngineError, type AccountId, type StoredMessage } from '@privcomm/client';
import { useEffect, useRef, useState } from 'react';
import { FlatList, Pressable, StyleSheet, Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Field, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { STATUS } from '../ui/status.ts';
import { useTheme } from '../ui/theme.ts';
import { IdentityWarning } from './IdentityWarning.tsx';

const EMPTY: StoredMessage[] = [];

/** The disappearing-message timers offered, in seconds (0: off). */
export const TIMERS: readonly { seconds: number; label: string }[] = [
  { seconds: 0, label: 'Off' },
  { seconds: 5 * 60, label: '5 minutes' },
  { seconds: 60 * 60, label: '1 hour' },
  { seconds: 24 * 60 * 60, label: '1 day' },
  { seconds: 7 * 24 * 60 * 60, label: '1 week' },
];

export const timerLabel = (seconds: number): string =>
  TIMERS.find((t) => t.seconds === seconds)?.label ?? `${seconds} seconds`;

/** "Stopped typing" is sent after this long without a keystroke. */
const TYPING_IDLE_MS = 5_000;

export const Chat = ({ accountId }: { accountId: AccountId }) => {
  const theme = useTheme();
  const navigation = useNavigation();
  const account = useAccountStore();
  const { client } = account;
  const name = useAccount(
    (s) => s.contacts.find((c) => c.accountId === accountId)?.name ?? accountId,
  );
  const history = useAccount((s) => s.histories[accountId] ?? EMPTY);
  const identity = useAccount((s) => s.identities[accountId]);
  const typing = useAccount((s) => s.typing[accountId] === true);
  const expireSeconds = useAccount(
    (s) => s.contacts.find((c) => c.accountId === accountId)?.expireSeconds ?? 0,
  );
  const request = useAccount(
    (s) => s.conversations.find((c) => c.accountId === accountId)?.request === true,
  );
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [choosingTimer, setChoosingTimer] = useState(false);
  const [selected, setSelected] = useState<StoredMessage | undefined>();
  const typingSent = useRef(false);
  const typingIdle = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  /** Typing indicators are best effort (online-only in the core): a failure is not shown. */
  const sendTyping = (typingNow: boolean): void => {
    clearTimeout(typingIdle.current);
    if (typingNow) typingIdle.current = setTimeout(() => sendTyping(false), TYPING_IDLE_MS);
    if (typingSent.current === typingNow) return;
    typingSent.current = typingNow;
    void client.sendTyping(accountId, typingNow).catch(() => undefined);
  };
  useEffect(() => () => clearTimeout(typingIdle.current), []);

  const edit = (text: string): void => {
    setDraft(text);
    sendTyping(text.trim() !== '');
  };

  useEffect(() => {
    void account.watchConversation(accountId);
    return () => account.unwatchConversation(accountId);
  }, [account, accountId]);

  // Received messages on screen are read: the core marks them and sends the read receipt.
  const unread = history.some((m) => m.direction === 'in' && m.status !== 'read');
  useEffect(() => {
    if (!unread) return;
    void client
      .markRead(accountId)
      .then(() => account.refresh())
      .catch(() => undefined); // not sent now: the messages stay unread and it is tried again
  }, [unread, client, account, accountId]);

  const explainHere = (caught: unknown): string =>
    caught instanceof ClientError && caught.code === 'RELAY_UNREACHABLE'
      ? 'Not connected: the message is kept and goes out when the relay is reachable (or tap Retry).'
      : explain(caught);

  const run = async (work: () => Promise<unknown>): Promise<boolean> => {
    setError(undefined);
    try {
      await work();
      return true;
    } catch (caught) {
      setError(explainHere(caught));
      // The core stores a message before sending it: after its own errors the text is kept in
      // the conversation (waiting, or "not sent" with Retry); after anything else it may not be.
      return caught instanceof ClientError || caught instanceof EngineError;
    } finally {
      await account.refresh();
    }
  };

  const send = async (): Promise<void> => {
    const text = draft;
    if (text.trim() === '') return;
    clearTimeout(typingIdle.current);
    typingSent.current = false; // the message itself ends the indicator on the other side
    const kept = await run(() => client.sendText(accountId, text));
    if (kept) setDraft((current) => (current === text ? '' : current));
  };

  const chooseTimer = async (seconds: number): Promise<void> => {
    setChoosingTimer(false);
    await run(() => client.setDisappearing(accountId, seconds));
  };

  const deleteSelected = async (): Promise<void> => {
    const message = selected;
    setSelected(undefined);
    if (message) await run(() => client.deleteForEveryone(accountId, message.id));
  };

  return (
    <Screen
      title={name}
      actions={
        <>
          <Button
            label="Call"
            kind="plain"
            hint={`Voice call with ${name}`}
            onPress={() => void run(() => client.calls.start(accountId))}
          />
          <Button
            label="Safety number"
            kind="plain"
            onPress={() => navigation.push({ name: 'safety-number', accountId })}
          />
          <Button label="Back" kind="plain" onPress={navigation.back} />
        </>
      }
    >
      {identity?.changed ? <IdentityWarning name={name} /> : null}
      {request ? <MessageRequest accountId={accountId} run={run} onGone={navigation.back} /> : null}
      <Button
        label={`Disappearing messages: ${timerLabel(expireSeconds)}`}
        kind="plain"
        hint="Choose after how long messages in this conversation disappear, on both phones"
        onPress={() => setChoosingTimer((open) => !open)}
      />
      {choosingTimer ? (
        <View style={styles.choices}>
          {TIMERS.map((t) => (
            <Button
              key={t.seconds}
              label={t.label}
              kind={t.seconds === expireSeconds ? 'primary' : 'plain'}
              onPress={() => void chooseTimer(t.seconds)}
            />
          ))}
        </View>
      ) : null}
      {selected ? (
        <View style={styles.choices}>
          <Button label="Delete for everyone" onPress={() => void deleteSelected()} />
          <Button label="Cancel" kind="plain" onPress={() => setSelected(undefined)} />
        </View>
      ) : null}
      <FlatList
        data={history}
        keyExtractor={(m) => `${m.direction}-${m.id}`}
        renderItem={({ item }) => (
          <Bubble
            message={item}
            name={name}
            onRetry={(m) => void retry(m)}
            onSelect={item.direction === 'out' && !item.deleted ? setSelected : undefined}
          />
        )}
        ListEmptyComponent={<Text style={{ color: theme.muted }}>No messages yet.</Text>}
      />
      {typing ? <Text style={{ color: theme.muted }}>{name} is typing…</Text> : null}
      {error ? <Notice text={error} /> : null}
      <View style={styles.composer}>
        <View style={{ flex: 1 }}>
          <Field label="Message" value={draft} onChangeText={edit} multiline />
        </View>
        <Button label="Send" onPress={() => void send()} disabled={draft.trim() === ''} />
      </View>
    </Screen>
  );

  /** The core sends it again under its own id (through the outbox, whatever its state). */
  async function retry(message: StoredMessage): Promise<void> {
    await run(() => client.retryMessage(accountId, message.id));
  }
};

/**
 * Someone who is not a contact wrote: accept (they become a contact under the name given),
 * block (nothing of theirs is kept from now on), or delete what they sent. The core decides
 * what each means; no read receipt goes to them until accepted.
 */
const MessageRequest = ({
  accountId,
  run,
  onGone,
}: {
  accountId: AccountId;
  run: (work: () => Promise<unknown>) => Promise<boolean>;
  onGone: () => void;
}) => {
  const { client } = useAccountStore();
  const [name, setName] = useState('');
  return (
    <View style={{ gap: 8 }}>
      <Notice
        kind="warning"
        text="This account is not in your contacts. Accept to reply with a name you choose; block to drop everything it sends; or delete this conversation."
      />
      <Field label="Name for this contact" value={name} onChangeText={setName} />
      <View style={styles.choices}>
        <Button
          label="Accept"
          disabled={name.trim() === ''}
          onPress={() => void run(() => client.addContact(name.trim(), accountId))}
        />
        <Button
          label="Block"
          kind="plain"
          hint="Drops everything this account sends from now on"
          onPress={() =>
            void run(async () => {
              await client.block(accountId);
              onGone();
            })
          }
        />
        <Button
          label="Delete"
          kind="plain"
          hint="Deletes this conversation on this phone"
          onPress={() =>
            void run(async () => {
              await client.deleteConversation(accountId);
              onGone();
            })
          }
        />
      </View>
    </View>
  );
};

const Bubble = ({
  message,
  name,
  onRetry,
  onSelect,
}: {
  message: StoredMessage;
  name: string;
  onRetry: (message: StoredMessage) => void;
  /** Long press: the actions on this message (delete for everyone). */
  onSelect: ((message: StoredMessage) => void) | undefined;
}) => {
  const theme = useTheme();
  const out = message.direction === 'out';
  const status = out ? STATUS[message.status] : undefined;
  const text = message.deleted ? 'This message was deleted' : message.text;
  const label = `${out ? 'You' : name}: ${text}${status ? `, ${status.words}` : ''}`;
  return (
    <Pressable
      accessible
      accessibilityLabel={label}
      accessibilityHint={onSelect ? 'Long press for actions' : undefined}
      onLongPress={onSelect ? () => onSelect(message) : undefined}
      style={[
        styles.bubble,
        out ? styles.out : styles.in,
        { backgroundColor: out ? theme.outgoing : theme.incoming },
      ]}
    >
      <Text style={{ color: theme.text, fontStyle: message.deleted ? 'italic' : 'normal' }}>
        {text}
      </Text>
      {status ? (
        <Text
          style={{
            color: message.status === 'failed' ? theme.danger : theme.muted,
            alignSelf: 'flex-end',
          }}
        >
          {status.mark}
        </Text>
      ) : null}
      {out && (message.status === 'failed' || message.status === 'sending') ? (
        <Button
          label="Retry"
          kind="plain"
          hint="Sends this message again"
          onPress={() => onRetry(message)}
        />
      ) : null}
    </Pressable>
  );
};

const styles = StyleSheet.create({
  choices: { flexDirection: 'row', flexWrap: 'wrap', gap: 8 },
  composer: { flexDirection: 'row', alignItems: 'flex-end', gap: 8 },
  bubble: { padding: 10, borderRadius: 12, marginVertical: 4, maxWidth: '85%', gap: 4 },
  out: { alignSelf: 'flex-end' },
  in: { alignSelf: 'flex-start' },
});
