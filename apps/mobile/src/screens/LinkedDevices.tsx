import type { DeviceList } from '@privcomm/client';
import { useCallback, useEffect, useRef, useState } from 'react';
import { Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Field, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { useTheme } from '../ui/theme.ts';

/**
 * This account's devices on the relay: the list, linking a new one (its link code, shown on the
 * new device, pasted here on the primary) and removing one. The core refuses what only the
 * primary may do; this shows its answer.
 */
export const LinkedDevices = () => {
  const theme = useTheme();
  const navigation = useNavigation();
  const { client } = useAccountStore();
  const profile = useAccount((s) => s.profile);
  const [devices, setDevices] = useState<DeviceList['devices'] | undefined>();
  const [linkCode, setLinkCode] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  // Loads may overlap (an event, an action): only the latest one started may set the list, so a
  // slow answer read before a removal cannot bring the removed device back.
  const latest = useRef(0);
  const load = useCallback(async () => {
    const mine = ++latest.current;
    try {
      const { devices: list } = await client.devices();
      if (mine === latest.current) setDevices(list);
    } catch (caught) {
      if (mine === latest.current) setError(explain(caught));
    }
  }, [client]);
  // The core reports devices that joined or left: the list follows without a refresh.
  const deviceChanges = useAccount((s) => s.deviceChanges);
  useEffect(() => {
    void load();
  }, [load, deviceChanges]);

  const act = async (work: () => Promise<void>): Promise<boolean> => {
    setBusy(true);
    setError(undefined);
    try {
      await work();
      return true;
    } catch (caught) {
      setError(explain(caught));
      return false;
    } finally {
      setBusy(false);
      await load();
    }
  };

  const [sent, setSent] = useState(false);
  const link = async (): Promise<void> => {
    const code = linkCode;
    setSent(false);
    if (await act(() => client.addDevice(code))) {
      setLinkCode('');
      setSent(true);
    }
  };

  return (
    <Screen
      title="Linked devices"
      actions={<Button label="Back" kind="plain" onPress={navigation.back} />}
    >
      {(devices ?? []).map((device) => {
        const self = device.deviceId === profile?.deviceId;
        const name = device.deviceId === 1 ? 'Primary device' : `Device ${device.deviceId}`;
        return (
          <View key={device.deviceId} style={{ gap: 4 }}>
            <Text
              style={{ color: theme.text }}
              accessibilityLabel={`${name}${self ? ', this phone' : ''}, added ${device.createdOn}, last seen ${device.lastSeenOn}`}
            >
              {name}
              {self ? ' (this phone)' : ''} · added {device.createdOn} · last seen{' '}
              {device.lastSeenOn}
            </Text>
            {!self && device.deviceId !== 1 ? (
              <Button
                label={`Remove ${name}`}
                kind="plain"
                disabled={busy}
                onPress={() => void act(() => client.removeDevice(device.deviceId))}
              />
            ) : null}
          </View>
        );
      })}
      <Field
        label="Link code from the new device"
        value={linkCode}
        onChangeText={setLinkCode}
        autoCapitalize="none"
        autoCorrect={false}
      />
      <Button
        label="Link this device"
        onPress={() => void link()}
        disabled={busy || linkCode.trim() === ''}
      />
      {sent ? (
        <Notice
          kind="info"
          text="Sent to the new device. It appears in the list once it has joined: refresh the list."
        />
      ) : null}
      <Button label="Refresh the list" kind="plain" onPress={() => void load()} />
      {error ? <Notice text={error} /> : null}
    </Screen>
  );
};
