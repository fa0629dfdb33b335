import { SafeAreaView } from 'react-native';
import { AppRoot } from './src/AppRoot.tsx';
import { devicePlatform } from './src/platform/device.ts';

export default function App() {
  return (
    <SafeAreaView style={{ flex: 1 }}>
      <AppRoot platform={devicePlatform} />
    </SafeAreaView>
  );
}
