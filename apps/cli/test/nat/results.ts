import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** One row of the table `npm run test:nat` prints: what a scenario's call did. */
export interface ScenarioResult {
  readonly scenario: string;
  readonly connected: boolean;
  /** The selected pair's candidate types, caller's side first ("srflx-srflx"), or why not. */
  readonly path: string;
  /** udp, tcp or tls (TURN over TLS), from the caller's side. */
  readonly transport: string;
  /** From placing the call to media flowing, at the caller (ms). */
  readonly setupMs: number | undefined;
  /** The callee heard the caller's tone (strongest frequency within 10 Hz of it). */
  readonly toneHeard: boolean;
  readonly note?: string;
}

/** Appends a row to the results file the runner prints (the scenarios run one after another). */
export const recordResult = (file: string | undefined, result: ScenarioResult): void => {
  if (!file) return;
  const rows = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as unknown[]) : [];
  writeFileSync(file, JSON.stringify([...rows, result]));
};

export const formatTable = (results: readonly ScenarioResult[]): string => {
  const header = ['scenario', 'connected', 'path chosen', 'transport', 'setup time', 'tone heard'];
  const rows = results.map((r) => [
    r.scenario,
    r.connected ? 'yes' : 'no',
    r.path,
    r.transport,
    r.setupMs === undefined ? '-' : `${(r.setupMs / 1000).toFixed(2)} s`,
    r.toneHeard ? 'yes' : 'no',
  ]);
  if (rows.length === 0) return 'NAT scenarios: no results (the test run failed before any call)';
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  const rule = `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`;
  const notes = results.filter((r) => r.note).map((r) => `${r.scenario}: ${r.note}`);
  return ['NAT scenarios', line(header), rule, ...rows.map(line), ...notes].join('\n');
};
