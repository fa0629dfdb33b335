/**
 * The benchmark's arithmetic, kept pure so that a unit test can check it: latency percentiles,
 * the per-scenario figures and the ratios between systems, and the table printed at the end.
 */

/** Latency percentiles in milliseconds (undefined when nothing was measured). */
export interface Percentiles {
  readonly p50?: number;
  readonly p99?: number;
  readonly p999?: number;
  readonly count: number;
}

/** Nearest-rank percentile of an ascending array: the smallest value with q of the data at or below it. */
const nearestRank = (sorted: Float64Array, q: number): number | undefined => {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
};

export const percentiles = (values: ArrayLike<number>): Percentiles => {
  const sorted = Float64Array.from(values).sort();
  return {
    p50: nearestRank(sorted, 0.5),
    p99: nearestRank(sorted, 0.99),
    p999: nearestRank(sorted, 0.999),
    count: sorted.length,
  };
};

/** A growable list of latencies without boxing every number. */
export class Samples {
  private values = new Float64Array(1024);
  length = 0;

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length] = value;
    this.length += 1;
  }

  /** The value pushed last. */
  last(): number | undefined {
    return this.length === 0 ? undefined : this.values[this.length - 1];
  }

  percentiles(): Percentiles {
    return percentiles(this.values.subarray(0, this.length));
  }
}

/** One measured row: a scenario on one system. Every field but `system` and `scenario` is optional. */
export interface Measurement {
  readonly scenario: string;
  readonly system: string;
  /** Messages (or logins) per second. */
  readonly rate?: number;
  /** Server CPU (server process plus its database share) per message, in microseconds. */
  readonly cpuPerMessageUs?: number;
  readonly serverCpuPerMessageUs?: number;
  readonly databaseCpuPerMessageUs?: number;
  /** The load generator's own CPU per message (it shares the machine with the server). */
  readonly loadGeneratorCpuPerMessageUs?: number;
  /** How busy the machine's cores were, all processes together, in percent. */
  readonly machineBusyPercent?: number;
  /** Send → receive. */
  readonly latency?: Percentiles;
  /** The sender's wait for acceptance (a durable commit, for the relay). */
  readonly acceptance?: Percentiles;
  /** Memory: RSS per 1,000 sessions for the idle scenario, else the server's RSS at the end. */
  readonly memoryMiB?: number;
  /** Messages sent but not received, and received twice: both must be 0. */
  readonly lost?: number;
  readonly duplicates?: number;
  /** Machine load average (1 min) when the row was measured. */
  readonly load?: number;
  readonly note?: string;
}

/** Whether a larger value of the figure is better (throughput) or worse (CPU, latency, memory). */
export type Direction = 'higher' | 'lower';

export interface Ratio {
  readonly scenario: string;
  readonly figure: string;
  readonly against: string;
  /** privcomm ÷ other: above 1 is better for `higher` figures, below 1 for `lower` ones. */
  readonly value: number;
  readonly direction: Direction;
}

const FIGURES: readonly {
  name: string;
  direction: Direction;
  read: (m: Measurement) => number | undefined;
}[] = [
  { name: 'rate', direction: 'higher', read: (m) => m.rate },
  { name: 'cpu µs/msg', direction: 'lower', read: (m) => m.cpuPerMessageUs },
  { name: 'p99 ms', direction: 'lower', read: (m) => m.latency?.p99 },
  { name: 'MiB', direction: 'lower', read: (m) => m.memoryMiB },
];

/**
 * privcomm ÷ each other system, for every scenario and figure both measured (a zero or missing
 * denominator gives no ratio rather than Infinity).
 */
export const ratios = (rows: readonly Measurement[], ours = 'privcomm'): Ratio[] => {
  const result: Ratio[] = [];
  for (const mine of rows.filter((row) => row.system === ours)) {
    for (const other of rows.filter(
      (row) => row.scenario === mine.scenario && row.system !== ours,
    )) {
      for (const figure of FIGURES) {
        const a = figure.read(mine);
        const b = figure.read(other);
        if (a === undefined || b === undefined || b === 0) continue;
        result.push({
          scenario: mine.scenario,
          figure: figure.name,
          against: other.system,
          value: a / b,
          direction: figure.direction,
        });
      }
    }
  }
  return result;
};

/** privcomm's durable throughput as a share of the machine's measured durable-path limit. */
export const shareOfLimit = (
  rate: number | undefined,
  limit: number | undefined,
): number | undefined =>
  rate === undefined || limit === undefined || limit <= 0 ? undefined : rate / limit;

const format = (value: number | undefined, digits = 0): string =>
  value === undefined || !Number.isFinite(value)
    ? '–'
    : value.toLocaleString('en-US', {
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      });

const latencyCell = (p: Percentiles | undefined): string =>
  p === undefined || p.count === 0
    ? '–'
    : `${format(p.p50, 1)} / ${format(p.p99, 1)} / ${format(p.p999, 1)}`;

/** The results as a Markdown table (docs/benchmarks.md takes it as printed). */
export const table = (rows: readonly Measurement[]): string => {
  const header = [
    'scenario',
    'system',
    'rate /s',
    'CPU µs/msg (server + db)',
    'send→receive p50 / p99 / p99.9 ms',
    'acceptance p50 / p99 / p99.9 ms',
    'MiB',
    'lost / dup',
    'load',
    'note',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) {
    const cpu =
      row.cpuPerMessageUs === undefined
        ? '–'
        : `${format(row.cpuPerMessageUs)} (${format(row.serverCpuPerMessageUs)} + ${format(row.databaseCpuPerMessageUs)})`;
    const cells = [
      row.scenario,
      row.system,
      format(row.rate),
      cpu,
      latencyCell(row.latency),
      latencyCell(row.acceptance),
      format(row.memoryMiB, 1),
      row.lost === undefined ? '–' : `${row.lost} / ${row.duplicates ?? 0}`,
      format(row.load, 2),
      row.note ?? '',
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
};

export const ratioTable = (list: readonly Ratio[]): string => {
  const lines = [
    '| scenario | figure | privcomm ÷ | ratio | better when |',
    '|---|---|---|---|---|',
  ];
  for (const ratio of list) {
    lines.push(
      `| ${ratio.scenario} | ${ratio.figure} | ${ratio.against} | ${format(ratio.value, 2)} | ${ratio.direction === 'higher' ? '> 1' : '< 1'} |`,
    );
  }
  return lines.join('\n');
};
