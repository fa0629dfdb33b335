import { describe, expect, it } from 'vitest';
import {
  percentiles,
  ratios,
  ratioTable,
  Samples,
  shareOfLimit,
  table,
  type Measurement,
} from '../bench/lib/stats.ts';

describe('benchmark arithmetic', () => {
  it('takes nearest-rank percentiles', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1..1000, unsorted
    expect(percentiles(values)).toEqual({ p50: 500, p99: 990, p999: 999, count: 1000 });
    expect(percentiles([7])).toEqual({ p50: 7, p99: 7, p999: 7, count: 1 });
    expect(percentiles([])).toEqual({ p50: undefined, p99: undefined, p999: undefined, count: 0 });
  });

  it('keeps every sample when it grows', () => {
    const samples = new Samples();
    for (let i = 1; i <= 5000; i += 1) samples.push(i);
    expect(samples.length).toBe(5000);
    expect(samples.percentiles()).toMatchObject({ p50: 2500, p99: 4950, count: 5000 });
  });

  it('divides privcomm by each other system, per scenario and figure both measured', () => {
    const rows: Measurement[] = [
      { scenario: 'online', system: 'privcomm', rate: 3000, cpuPerMessageUs: 150, memoryMiB: 10 },
      { scenario: 'online', system: 'ejabberd', rate: 2000, cpuPerMessageUs: 100 },
      { scenario: 'online', system: 'limit', rate: 0 },
      { scenario: 'idle', system: 'ejabberd', memoryMiB: 49 },
    ];
    expect(ratios(rows)).toEqual([
      { scenario: 'online', figure: 'rate', against: 'ejabberd', value: 1.5, direction: 'higher' },
      {
        scenario: 'online',
        figure: 'cpu µs/msg',
        against: 'ejabberd',
        value: 1.5,
        direction: 'lower',
      },
    ]);
  });

  it('gives the share of the durable limit only when both are known', () => {
    expect(shareOfLimit(6000, 10000)).toBe(0.6);
    expect(shareOfLimit(undefined, 10000)).toBeUndefined();
    expect(shareOfLimit(6000, 0)).toBeUndefined();
  });

  it('prints one table row per measurement, with dashes for what was not measured', () => {
    const printed = table([
      {
        scenario: 'online',
        system: 'privcomm',
        rate: 12345.6,
        cpuPerMessageUs: 150,
        serverCpuPerMessageUs: 100,
        databaseCpuPerMessageUs: 50,
        latency: { p50: 1.234, p99: 5, p999: 9.99, count: 3 },
        lost: 0,
        duplicates: 0,
        load: 1.5,
      },
    ]).split('\n');
    expect(printed).toHaveLength(3);
    expect(printed[2]).toBe(
      '| online | privcomm | 12,346 | 150 (100 + 50) | 1.2 / 5.0 / 10.0 | – | – | 0 / 0 | 1.50 |  |',
    );
    expect(ratioTable([])).toBe(
      '| scenario | figure | privcomm ÷ | ratio | better when |\n|---|---|---|---|---|',
    );
  });
});
