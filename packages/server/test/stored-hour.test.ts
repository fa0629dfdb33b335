import { describe, expect, it, vi } from 'vitest';
import { storedHourNow, storedHourText } from '../src/stored-hour.ts';

describe('storedHourText', () => {
  it('is the instant in ISO 8601, the same for the same hour and another for another', () => {
    const hour = Date.UTC(2026, 11, 7, 3, 0, 0);
    expect(storedHourText(hour)).toBe('2026-12-07T03:00:00.000Z');
    expect(storedHourText(hour)).toBe(storedHourText(hour));
    expect(storedHourText(hour + 3_600_000)).toBe('2026-12-07T04:00:00.000Z');
    expect(storedHourText(0)).toBe('1970-01-01T00:00:00.000Z');
  });

  it('stays right past its bound of remembered hours', () => {
    const start = Date.UTC(2020, 0, 1);
    for (let i = 0; i < 5_000; i += 1) storedHourText(start + i * 3_600_000);
    expect(storedHourText(start + 4_999 * 3_600_000)).toBe(
      new Date(start + 4_999 * 3_600_000).toISOString(),
    );
    expect(storedHourText(start)).toBe('2020-01-01T00:00:00.000Z');
  });
});

describe('storedHourNow', () => {
  it('is the start of the current hour', () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 11, 7, 3, 59, 59, 999) });
    try {
      expect(storedHourNow()).toBe('2026-12-07T03:00:00.000Z');
      vi.setSystemTime(Date.UTC(2026, 11, 7, 4, 0, 0, 0));
      expect(storedHourNow()).toBe('2026-12-07T04:00:00.000Z');
    } finally {
      vi.useRealTimers();
    }
  });
});
