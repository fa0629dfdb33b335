import { useColorScheme } from 'react-native';

export interface Theme {
  readonly background: string;
  readonly surface: string;
  readonly text: string;
  readonly muted: string;
  readonly accent: string;
  readonly onAccent: string;
  readonly danger: string;
  readonly warningBackground: string;
  readonly outgoing: string;
  readonly incoming: string;
}

const light: Theme = {
  background: '#ffffff',
  surface: '#f1f3f5',
  text: '#111418',
  muted: '#5c6670',
  accent: '#1b5fc1',
  onAccent: '#ffffff',
  danger: '#b3261e',
  warningBackground: '#fff4d6',
  outgoing: '#dbe8fb',
  incoming: '#f1f3f5',
};

const dark: Theme = {
  background: '#0f1216',
  surface: '#1b2027',
  text: '#eef1f4',
  muted: '#a3adb8',
  accent: '#7fb0ff',
  onAccent: '#0f1216',
  danger: '#ffb4ab',
  warningBackground: '#3d3200',
  outgoing: '#1f3a63',
  incoming: '#1b2027',
};

/** The palette for the system's light or dark setting. Text sizes are left to the system scale. */
export const useTheme = (): Theme => (useColorScheme() === 'dark' ? dark : light);
