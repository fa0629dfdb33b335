import type { CallState, CallSummary, PrivcommClient } from '@privcomm/client';
import { createStore, type StoreApi } from 'zustand/vanilla';

export interface CallStoreState {
  /** The current call as the core's call state machine has it, or undefined between calls. */
  readonly call: CallState | undefined;
  /** The last call that ended, for the "call ended" line. */
  readonly lastEnded: CallSummary | undefined;
  /** The core's mute state of the current call's microphone. */
  readonly muted: boolean;
}

/** One store per client for its call: a copy of the core's call events. */
export const createCallStore = (
  client: PrivcommClient,
): { store: StoreApi<CallStoreState>; dispose: () => void } => {
  const store = createStore<CallStoreState>(() => ({
    call: undefined,
    lastEnded: undefined,
    muted: false,
  }));
  const dispose = client.subscribe((event) => {
    if (event.type === 'call') store.setState({ call: event.state });
    else if (event.type === 'call-muted') store.setState({ muted: event.muted });
    else if (event.type === 'call-ended')
      store.setState({ call: undefined, lastEnded: event.summary });
  });
  return { store, dispose };
};
