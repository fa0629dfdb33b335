import type { PrivcommClient } from '@privcomm/client';
import { useEffect, useState } from 'react';
import { ActivityIndicator, StatusBar, useColorScheme, View } from 'react-native';
import {
  openClient,
  startDevice,
  wipeDevice,
  type DeviceParts,
} from './platform/client-factory.ts';
import type { DevicePlatform } from './platform/platform.ts';
import { AddContact } from './screens/AddContact.tsx';
import { CallScreen } from './screens/CallScreen.tsx';
import { Chat } from './screens/Chat.tsx';
import { LinkedDevices } from './screens/LinkedDevices.tsx';
import { ConversationList } from './screens/ConversationList.tsx';
import { Onboarding } from './screens/Onboarding.tsx';
import { SafetyNumber } from './screens/SafetyNumber.tsx';
import { Settings } from './screens/Settings.tsx';
import { AccountProvider, DeviceProvider } from './state/context.tsx';
import { Notice, Screen } from './ui/components.tsx';
import { NavigationProvider, useNavigation } from './ui/navigation.tsx';
import { useTheme } from './ui/theme.ts';

/** What the relay no longer knows after Settings ended it. */
type Ended = 'device' | 'account';

type Phase =
  | { readonly kind: 'opening' }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'onboarding'; readonly parts: DeviceParts; readonly ended?: Ended }
  | { readonly kind: 'ready'; readonly parts: DeviceParts; readonly client: PrivcommClient }
  | { readonly kind: 'wiping'; readonly ended: Ended };

const ENDED: Record<Ended, string> = {
  account: 'The account was deleted',
  device: 'This device was removed from the account',
};

const Routes = ({ onDeleted }: { onDeleted: (what: Ended) => void }) => {
  const { route } = useNavigation();
  switch (route.name) {
    case 'conversations':
      return <ConversationList />;
    case 'chat':
      return <Chat key={route.accountId} accountId={route.accountId} />;
    case 'add-contact':
      return <AddContact />;
    case 'devices':
      return <LinkedDevices />;
    case 'safety-number':
      return <SafetyNumber accountId={route.accountId} />;
    case 'settings':
      return <Settings onDeleted={onDeleted} />;
  }
};

/**
 * The app over an injected platform: opens the device's engine, store and signer, then shows
 * onboarding (no account yet) or the account's screens.
 */
export const AppRoot = ({ platform }: { platform: DevicePlatform }) => {
  const theme = useTheme();
  const dark = useColorScheme() === 'dark';
  const [phase, setPhase] = useState<Phase>({ kind: 'opening' });

  useEffect(() => {
    let live = true;
    (async () => {
      const { parts, profile } = await startDevice(platform);
      const next: Phase = profile
        ? { kind: 'ready', parts, client: await openClient(parts, profile.relayUrl) }
        : { kind: 'onboarding', parts };
      if (live) setPhase(next);
    })().catch((error: unknown) => {
      if (live) setPhase({ kind: 'failed', message: String((error as Error)?.message ?? error) });
    });
    return () => {
      live = false;
    };
  }, [platform]);

  /** The relay has forgotten the account or this device: erase the phone's copy, start anew. */
  const wipe = (parts: DeviceParts, client: PrivcommClient, ended: Ended): void => {
    setPhase({ kind: 'wiping', ended });
    wipeDevice(parts, client).then(
      (fresh) => setPhase({ kind: 'onboarding', parts: fresh, ended }),
      (error: unknown) =>
        setPhase({
          kind: 'failed',
          message: `${ENDED[ended]} on the relay, but erasing this phone's copy failed (${String((error as Error)?.message ?? error)}). Clear privcomm's data in Android's settings (Apps, privcomm, Storage), or uninstall it.`,
        }),
    );
  };

  return (
    <View style={{ flex: 1, backgroundColor: theme.background }}>
      <StatusBar barStyle={dark ? 'light-content' : 'dark-content'} />
      {phase.kind === 'opening' ? (
        <ActivityIndicator accessibilityLabel="Opening privcomm" style={{ flex: 1 }} />
      ) : phase.kind === 'failed' ? (
        <Screen title="privcomm cannot start">
          <Notice text={phase.message} />
        </Screen>
      ) : phase.kind === 'wiping' ? (
        <ActivityIndicator
          accessibilityLabel="Erasing this phone's messages and keys"
          style={{ flex: 1 }}
        />
      ) : phase.kind === 'onboarding' ? (
        <Onboarding
          parts={phase.parts}
          {...(phase.ended
            ? {
                notice: `${ENDED[phase.ended]}, and this phone's messages, contacts and keys were erased. You can start again.`,
              }
            : {})}
          onRegistered={(client) => setPhase({ kind: 'ready', parts: phase.parts, client })}
        />
      ) : (
        <DeviceProvider platform={platform}>
          <AccountProvider client={phase.client}>
            <NavigationProvider>
              <Routes onDeleted={(ended) => wipe(phase.parts, phase.client, ended)} />
              <CallScreen />
            </NavigationProvider>
          </AccountProvider>
        </DeviceProvider>
      )}
    </View>
  );
};
