import type { CallState, CallSummary, EndReason } from '@privcomm/client';
import { useEffect, useState } from 'react';
import { StyleSheet, Text, View } from 'react-native';
import { useAccount, useAccountStore, useCall, useDevice } from '../state/context.tsx';
import { Button, Notice } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useTheme } from '../ui/theme.ts';

const ENDED: Record<EndReason, string> = {
  'hung-up': 'Call ended',
  declined: 'Call declined',
  busy: 'Busy: they are in another call',
  'no-answer': 'No answer',
  failed: 'The call could not connect',
  'answered-elsewhere': 'Answered on another of your devices',
};

export const MICROPHONE_REFUSED =
  "privcomm may not use the microphone, so the call could not start. Allow it in Android's Settings › Apps › privcomm › Permissions, then call again.";

export const endedText = (summary: CallSummary): string =>
  summary.code === 'MICROPHONE_DENIED'
    ? MICROPHONE_REFUSED
    : `${ENDED[summary.reason]}${summary.connected ? (summary.relay ? ' · media went through the relay' : ' · direct connection') : ''}`;

const minutesSeconds = (ms: number): string => {
  const total = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, '0')}`;
};

/** Seconds since `since`, ticking while shown. */
const useElapsed = (since: number | undefined): string => {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (since === undefined) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [since]);
  return since === undefined ? '' : minutesSeconds(now - since);
};

const TITLE: Record<Exclude<CallState['status'], 'idle' | 'ended'>, (name: string) => string> = {
  outgoing: (name) => `Calling ${name}…`,
  ringing: (name) => `${name} is calling`,
  connecting: () => 'Connecting…',
  connected: (name) => `In call with ${name}`,
};

/**
 * The current call, over the screens, as the core's call state machine has it: outgoing,
 * ringing (answer or decline), connecting, connected (duration, hang up); then how it ended.
 */
export const CallScreen = () => {
  const theme = useTheme();
  const { client } = useAccountStore();
  const call = useCall((s) => s.call);
  const lastEnded = useCall((s) => s.lastEnded);
  const contacts = useAccount((s) => s.contacts);
  const muted = useCall((s) => s.muted);
  const { audioRoute } = useDevice();
  const [speaker, setSpeaker] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [dismissed, setDismissed] = useState<string | undefined>();
  const elapsed = useElapsed(call?.status === 'connected' ? call.connectedAt : undefined);

  const nameOf = (accountId: string): string =>
    contacts.find((c) => c.accountId === accountId)?.name ?? accountId;
  const act = (work: () => Promise<void>) => () => {
    setError(undefined);
    work().catch((caught: unknown) => setError(explain(caught)));
  };

  // Every call starts on the earpiece: the speaker is switched off when a call ends.
  const inCall = call !== undefined && call.status !== 'idle' && call.status !== 'ended';
  useEffect(() => {
    if (inCall || !speaker) return;
    setSpeaker(false);
    void Promise.resolve(audioRoute?.setSpeaker(false)).catch(() => undefined);
  }, [inCall, speaker, audioRoute]);

  const toggleSpeaker = (): void => {
    if (!audioRoute) return;
    const on = !speaker;
    setError(undefined);
    Promise.resolve(audioRoute.setSpeaker(on))
      .then(() => setSpeaker(on))
      .catch((caught: unknown) => setError(explain(caught)));
  };

  if (!call || call.status === 'idle' || call.status === 'ended') {
    if (!lastEnded || dismissed === lastEnded.callId) return null;
    return (
      <View style={[styles.banner, { backgroundColor: theme.surface }]}>
        <Text accessibilityRole="alert" style={{ color: theme.text }}>
          {nameOf(lastEnded.peer)}: {endedText(lastEnded)}
        </Text>
        <Button label="Dismiss" kind="plain" onPress={() => setDismissed(lastEnded.callId)} />
      </View>
    );
  }
  const name = nameOf(call.call.peer);
  return (
    <View style={[styles.overlay, { backgroundColor: theme.background }]} accessibilityViewIsModal>
      <Text accessibilityRole="header" style={[styles.title, { color: theme.text }]}>
        {TITLE[call.status](name)}
      </Text>
      {call.status === 'connected' ? (
        <Text
          accessibilityLabel={`Call duration ${elapsed}`}
          style={{ color: theme.muted, fontSize: 18 }}
        >
          {elapsed}
        </Text>
      ) : null}
      {error ? <Notice text={error} /> : null}
      <View style={styles.actions}>
        {call.status === 'ringing' ? (
          <>
            <Button label="Answer" onPress={act(() => client.calls.accept())} />
            <Button label="Decline" kind="plain" onPress={act(() => client.calls.decline())} />
          </>
        ) : (
          <>
            <Button
              label={muted ? 'Unmute' : 'Mute'}
              kind={muted ? 'primary' : 'plain'}
              hint={muted ? 'Your microphone is off' : 'Turns your microphone off'}
              onPress={act(async () => client.calls.setMuted(!muted))}
            />
            {audioRoute ? (
              <Button
                label={speaker ? 'Speaker off' : 'Speaker on'}
                kind={speaker ? 'primary' : 'plain'}
                hint={
                  speaker ? 'Plays the call on the earpiece' : 'Plays the call on the loudspeaker'
                }
                onPress={toggleSpeaker}
              />
            ) : null}
            <Button label="Hang up" onPress={act(() => client.calls.hangup())} />
          </>
        )}
      </View>
    </View>
  );
};

const styles = StyleSheet.create({
  overlay: {
    position: 'absolute',
    top: 0,
    left: 0,
    right: 0,
    bottom: 0,
    padding: 24,
    gap: 16,
    justifyContent: 'center',
    alignItems: 'center',
  },
  title: { fontSize: 24, fontWeight: '700', textAlign: 'center' },
  actions: { flexDirection: 'row', flexWrap: 'wrap', justifyContent: 'center', gap: 16 },
  banner: { padding: 12, gap: 8 },
});
