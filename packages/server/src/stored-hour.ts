/**
 * `storedHour` as envelopes carry it: the hour a row was stored in (or, delivered first, would
 * be), in ISO 8601. Rows expire (ENVELOPE_TTL_DAYS, 30 by default), so few distinct hours are
 * ever read: each hour's text is made once. Until 2026-12-07 node-postgres parsed every stored
 * envelope's hour into a Date, formatted back with toISOString: the parse alone was 3 % of the
 * relay's CPU samples in the benchmark's drain (docs/benchmarks.md, item 47).
 */
const HOUR_MS = 3_600_000;
/** Above the 2,161 hours of the longest queue (ENVELOPE_TTL_DAYS 90): a bound, never reached. */
const MAX_HOURS = 4_000;
const texts = new Map<number, string>();

/** The ISO text of the instant `ms` (epoch milliseconds, on the hour for stored rows). */
export const storedHourText = (ms: number): string => {
  let text = texts.get(ms);
  if (text === undefined) {
    if (texts.size >= MAX_HOURS) texts.clear();
    text = new Date(ms).toISOString();
    texts.set(ms, text);
  }
  return text;
};

/** The hour an envelope delivered first now would be stored in. */
export const storedHourNow = (): string =>
  storedHourText(Math.floor(Date.now() / HOUR_MS) * HOUR_MS);
