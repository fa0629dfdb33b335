import type { ReactNode } from 'react';
import {
  Pressable,
  StyleSheet,
  Switch,
  Text,
  TextInput,
  View,
  type TextInputProps,
} from 'react-native';
import { useTheme } from './theme.ts';

export const Screen = ({
  title,
  children,
  actions,
}: {
  title: string;
  children: ReactNode;
  actions?: ReactNode;
}) => {
  const theme = useTheme();
  return (
    <View style={[styles.screen, { backgroundColor: theme.background }]}>
      <View style={styles.header}>
        <Text accessibilityRole="header" style={[styles.title, { color: theme.text }]}>
          {title}
        </Text>
        <View style={styles.actions}>{actions}</View>
      </View>
      {children}
    </View>
  );
};

export const Button = ({
  label,
  onPress,
  disabled,
  kind = 'primary',
  hint,
}: {
  label: string;
  onPress: () => void;
  disabled?: boolean;
  kind?: 'primary' | 'plain';
  hint?: string;
}) => {
  const theme = useTheme();
  const primary = kind === 'primary';
  return (
    <Pressable
      accessibilityRole="button"
      accessibilityLabel={label}
      accessibilityHint={hint}
      accessibilityState={{ disabled: !!disabled }}
      disabled={disabled}
      onPress={onPress}
      style={[
        styles.button,
        primary ? { backgroundColor: theme.accent } : { borderColor: theme.accent, borderWidth: 1 },
        disabled ? styles.disabled : null,
      ]}
    >
      <Text style={{ color: primary ? theme.onAccent : theme.accent, fontWeight: '600' }}>
        {label}
      </Text>
    </Pressable>
  );
};

export const Field = ({ label, ...props }: { label: string } & TextInputProps) => {
  const theme = useTheme();
  return (
    <View style={styles.field}>
      <Text style={{ color: theme.muted }}>{label}</Text>
      <TextInput
        accessibilityLabel={label}
        placeholderTextColor={theme.muted}
        style={[styles.input, { color: theme.text, borderColor: theme.muted }]}
        {...props}
      />
    </View>
  );
};

/** A setting that is on or off, with what it does in words (the label is what is read out). */
export const Toggle = ({
  label,
  description,
  value,
  onChange,
}: {
  label: string;
  description: string;
  value: boolean;
  onChange: (value: boolean) => void;
}) => {
  const theme = useTheme();
  return (
    <View style={styles.toggle}>
      <View style={{ flex: 1, gap: 2 }}>
        <Text style={{ color: theme.text, fontWeight: '600' }}>{label}</Text>
        <Text style={{ color: theme.muted }}>{description}</Text>
      </View>
      <Switch
        accessibilityRole="switch"
        accessibilityLabel={label}
        accessibilityHint={description}
        accessibilityState={{ checked: value }}
        value={value}
        onValueChange={onChange}
        trackColor={{ true: theme.accent, false: theme.muted }}
      />
    </View>
  );
};

export const Notice = ({
  text,
  kind = 'error',
}: {
  text: string;
  kind?: 'error' | 'warning' | 'info';
}) => {
  const theme = useTheme();
  return (
    <View
      accessibilityRole={kind === 'info' ? 'text' : 'alert'}
      style={[
        styles.notice,
        { backgroundColor: kind === 'info' ? theme.surface : theme.warningBackground },
      ]}
    >
      <Text style={{ color: kind === 'error' ? theme.danger : theme.text }}>{text}</Text>
    </View>
  );
};

const styles = StyleSheet.create({
  screen: { flex: 1, padding: 16, gap: 12 },
  header: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', gap: 8 },
  title: { fontSize: 22, fontWeight: '700', flexShrink: 1 },
  // Buttons wrap to a second line rather than clip when the system's text scale is large.
  actions: {
    flexDirection: 'row',
    flexWrap: 'wrap',
    justifyContent: 'flex-end',
    gap: 8,
    flexShrink: 1,
  },
  toggle: { flexDirection: 'row', alignItems: 'center', gap: 12, paddingVertical: 8 },
  button: { paddingVertical: 10, paddingHorizontal: 14, borderRadius: 8, alignItems: 'center' },
  disabled: { opacity: 0.5 },
  field: { gap: 4 },
  input: {
    borderWidth: 1,
    borderRadius: 8,
    paddingHorizontal: 10,
    paddingVertical: 8,
    fontSize: 16,
  },
  notice: { padding: 12, borderRadius: 8 },
});
