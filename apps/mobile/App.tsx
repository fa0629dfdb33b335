import { SafeAreaView } from 'react-native';
import { AppRoot } from './src/AppRoot.tsx';
// No extension: Metro then picks device.web.ts for the web build (an explicit .ts skips that).
import { devicePlatform } from './src/platform/device';

export default function App() {
  return (
    <SafeAreaView style={{ flex: 1 }}>
      <AppRoot platform={devicePlatform} />
    </SafeAreaView>
  );
}
