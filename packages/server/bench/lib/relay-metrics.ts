/**
 * How the relay made a scenario's sends durable, from its Prometheus counters: accepted on the
 * device's acknowledgement with no write (delivered first), written after the window passed
 * without one, or written at once (not delivered first: the device was offline, behind, or its
 * socket on another instance). The share written is what the database's CPU per message follows.
 */
export interface Durability {
  readonly accepted: number;
  readonly acknowledgedFirst: number;
  readonly writtenAfterWindow: number;
}

const COUNTERS = {
  accepted: 'privcomm_envelopes_stored_total',
  acknowledgedFirst: 'privcomm_envelopes_direct_acknowledged_total',
  writtenAfterWindow: 'privcomm_envelopes_direct_stored_total',
} as const;

export const readDurability = async (relayUrl: string): Promise<Durability | undefined> => {
  const response = await fetch(`${relayUrl}/metrics`, { signal: AbortSignal.timeout(5_000) }).catch(
    () => undefined,
  );
  if (!response?.ok) return undefined;
  const text = await response.text();
  const value = (name: string): number =>
    Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  return {
    accepted: value(COUNTERS.accepted),
    acknowledgedFirst: value(COUNTERS.acknowledgedFirst),
    writtenAfterWindow: value(COUNTERS.writtenAfterWindow),
  };
};

/** "accepted with no write 93 %, written after the window 5 %, at once 2 %" between two reads. */
export const describeDurability = (
  before: Durability | undefined,
  after: Durability | undefined,
): string | undefined => {
  if (!before || !after) return undefined;
  const accepted = after.accepted - before.accepted;
  if (!(accepted > 0)) return undefined;
  const first = after.acknowledgedFirst - before.acknowledgedFirst;
  const late = after.writtenAfterWindow - before.writtenAfterWindow;
  const percent = (n: number): string => `${Math.round((100 * n) / accepted)} %`;
  return `accepted with no write ${percent(first)}, written after the window ${percent(late)}, at once ${percent(accepted - first - late)}`;
};
