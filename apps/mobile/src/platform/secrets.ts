/**
 * Where JavaScript keeps the few secrets it must hold: expo-secure-store's shape (values
 * encrypted with a key in the Android Keystore). Never AsyncStorage: lint refuses its import.
 */
export interface SecretStore {
  getItemAsync(key: string): Promise<string | null>;
  setItemAsync(key: string, value: string): Promise<void>;
  deleteItemAsync(key: string): Promise<void>;
}
