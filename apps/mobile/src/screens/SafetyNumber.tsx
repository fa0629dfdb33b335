import { safetyNumberCode, type AccountId, type SafetyNumber as Digits } from '@privcomm/client';
import { useEffect, useState } from 'react';
import { ScrollView, StyleSheet, Text, View } from 'react-native';
import { useAccount, useAccountStore } from '../state/context.tsx';
import { Button, Notice, Screen } from '../ui/components.tsx';
import { explain } from '../ui/errors.ts';
import { useNavigation } from '../ui/navigation.tsx';
import { QrCode } from '../ui/QrCode.tsx';
import { useTheme } from '../ui/theme.ts';
import { CAMERA_REFUSED, QrScanScreen, useQrScan } from '../ui/useQrScan.tsx';
import { IdentityWarning } from './IdentityWarning.tsx';

/** The 60 digits as 12 groups of 5, the way both phones show them. */
export const groupDigits = (digits: string): string[] => digits.match(/.{1,5}/g) ?? [];

/** A contact's safety number, its verified state, and a changed identity with what to do. */
export const SafetyNumber = ({ accountId }: { accountId: AccountId }) => {
  const theme = useTheme();
  const navigation = useNavigation();
  const account = useAccountStore();
  const { client } = account;
  const name = useAccount(
    (s) => s.contacts.find((c) => c.accountId === accountId)?.name ?? accountId,
  );
  const identity = useAccount((s) => s.identities[accountId]);
  const [number, setNumber] = useState<Digits | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    let live = true;
    client
      .safetyNumber(accountId)
      .then((n) => live && setNumber(n))
      .then(() => account.refresh())
      .catch((caught: unknown) => live && setError(explain(caught)));
    return () => {
      live = false;
    };
  }, [client, account, accountId, identity?.changed]);

  const act = async (work: () => Promise<void>): Promise<void> => {
    setError(undefined);
    try {
      await work();
      setNumber(await client.safetyNumber(accountId));
    } catch (caught) {
      setError(explain(caught));
    } finally {
      await account.refresh();
    }
  };

  // The core compares the scanned code with this side's and marks the contact verified.
  const scan = useQrScan((data) => void act(() => client.verifyScanned(accountId, data)));

  if (scan.scanning)
    return (
      <QrScanScreen
        scan={scan}
        title={`Scan ${name}'s code`}
        instructions={`Point the camera at the QR code on ${name}'s safety-number screen.`}
      />
    );

  const groups = number ? groupDigits(number.digits) : [];
  return (
    <Screen
      title={`Safety number with ${name}`}
      actions={<Button label="Back" kind="plain" onPress={navigation.back} />}
    >
      <ScrollView contentContainerStyle={{ gap: 12 }}>
        {identity?.changed ? <IdentityWarning name={name} /> : null}
        <Text style={{ color: theme.text }}>
          Compare these numbers with the ones on {name}'s phone. If they are equal, nobody is
          between you.
        </Text>
        {number ? (
          <View
            accessible
            accessibilityLabel={`Safety number: ${groups.join(' ')}`}
            testID="safety-digits"
            style={styles.grid}
          >
            {groups.map((group, i) => (
              <Text key={i} style={[styles.group, { color: theme.text }]}>
                {group}
              </Text>
            ))}
          </View>
        ) : null}
        {error ? <Notice text={error} /> : null}
        {scan.refused ? (
          <Notice text={`${CAMERA_REFUSED} Or compare the 60 digits with ${name} instead.`} />
        ) : null}
        {identity?.changed ? (
          <Button
            label="I have compared the new number: accept it"
            onPress={() => void act(() => client.acceptIdentity(accountId))}
          />
        ) : identity?.verified ? (
          <Notice kind="info" text={`You verified ${name}'s safety number.`} />
        ) : (
          <Button
            label="Mark as verified"
            onPress={() => void act(() => client.verify(accountId))}
            disabled={!number}
          />
        )}
        {number ? (
          <>
            <Text style={{ color: theme.text }}>
              Or scan: each phone shows this code; scanning the other's compares the numbers.
            </Text>
            <QrCode
              value={safetyNumberCode(number.digits)}
              label={`QR code of your safety number with ${name}`}
            />
            {scan.available && !identity?.changed ? (
              <Button
                label={`Scan ${name}'s code`}
                kind="plain"
                hint="Opens the camera to compare safety numbers"
                onPress={() => {
                  setError(undefined);
                  void scan.start();
                }}
              />
            ) : null}
          </>
        ) : null}
      </ScrollView>
    </Screen>
  );
};

const styles = StyleSheet.create({
  grid: { flexDirection: 'row', flexWrap: 'wrap', gap: 12, justifyContent: 'center' },
  group: { fontFamily: 'monospace', fontSize: 20, width: '28%', textAlign: 'center' },
});
