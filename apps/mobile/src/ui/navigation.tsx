import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  type ReactNode,
} from 'react';
import { BackHandler } from 'react-native';
import type { AccountId } from '@privcomm/client';

export type Route =
  | { readonly name: 'conversations' }
  | { readonly name: 'chat'; readonly accountId: AccountId }
  | { readonly name: 'add-contact' }
  | { readonly name: 'devices' }
  | { readonly name: 'settings' }
  | { readonly name: 'safety-number'; readonly accountId: AccountId };

interface Navigation {
  readonly route: Route;
  push(route: Route): void;
  back(): void;
}

const NavigationContext = createContext<Navigation | undefined>(undefined);

/**
 * A stack of screens in React state, with Android's back button popping it. A navigation library
 * would add native dependencies for four screens; this can be replaced when the app grows.
 */
export const NavigationProvider = ({ children }: { children: ReactNode }) => {
  const [stack, setStack] = useState<Route[]>([{ name: 'conversations' }]);
  const push = useCallback((route: Route) => setStack((s) => [...s, route]), []);
  const back = useCallback(() => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)), []);
  useEffect(() => {
    const subscription = BackHandler.addEventListener('hardwareBackPress', () => {
      if (stack.length <= 1) return false;
      back();
      return true;
    });
    return () => subscription.remove();
  }, [stack, back]);
  const value = useMemo(
    () => ({ route: stack[stack.length - 1] as Route, push, back }),
    [stack, push, back],
  );
  return <NavigationContext.Provider value={value}>{children}</NavigationContext.Provider>;
};

export const useNavigation = (): Navigation => {
  const value = useContext(NavigationContext);
  if (!value) throw new Error('useNavigation outside NavigationProvider');
  return value;
};
