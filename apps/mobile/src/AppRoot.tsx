import type { PrivcommClient } from '@privcomm/client';
import { useEffect, useState } from 'react';
import { ActivityIndicator, StatusBar, useColorScheme, View } from 'react-native';
import { openClient, openDeviceParts, type DeviceParts } from './platform/client-factory.ts';
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

type Phase =
  | { readonly kind: 'opening' }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'onboarding'; readonly parts: DeviceParts }
  | { readonly kind: 'ready'; readonly client: PrivcommClient }
  | { readonly kind: 'deleted'; readonly what: 'device' | 'account' };

const Routes = ({ onDeleted }: { onDeleted: (what: 'device' | 'account') => void }) => {
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
      const parts = await openDeviceParts(platform);
      const profile = await parts.store.profile();
      const next: Phase = profile
        ? { kind: 'ready', client: await openClient(parts, profile.relayUrl) }
        : { kind: 'onboarding', parts };
      if (live) setPhase(next);
    })().catch((error: unknown) => {
      if (live) setPhase({ kind: 'failed', message: String((error as Error)?.message ?? error) });
    });
    return () => {
      live = false;
    };
  }, [platform]);

  return (
    <View style={{ flex: 1, backgroundColor: theme.background }}>
      <StatusBar barStyle={dark ? 'light-content' : 'dark-content'} />
      {phase.kind === 'opening' ? (
        <ActivityIndicator accessibilityLabel="Opening privcomm" style={{ flex: 1 }} />
      ) : phase.kind === 'failed' ? (
        <Screen title="privcomm cannot start">
          <Notice text={phase.message} />
        </Screen>
      ) : phase.kind === 'deleted' ? (
        <Screen title={phase.what === 'account' ? 'Account deleted' : 'Device removed'}>
          <Notice
            kind="info"
            text={`The relay no longer knows this ${phase.what}. The messages on this phone stay until you clear privcomm's data in Android's settings (or uninstall it); then you can start again.`}
          />
        </Screen>
      ) : phase.kind === 'onboarding' ? (
        <Onboarding
          parts={phase.parts}
          onRegistered={(client) => setPhase({ kind: 'ready', client })}
        />
      ) : (
        <DeviceProvider platform={platform}>
          <AccountProvider client={phase.client}>
            <NavigationProvider>
              <Routes onDeleted={(what) => setPhase({ kind: 'deleted', what })} />
              <CallScreen />
            </NavigationProvider>
          </AccountProvider>
        </DeviceProvider>
      )}
    </View>
  );
};
