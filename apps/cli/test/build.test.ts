import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isBuildFresh } from '../scripts/build-state.js';
import { BIN, removeTempDirs, runCli, tempDir } from './support/cli.ts';

/** When bin/privcomm.js may run the compiled CLI (dist/) instead of the sources. */

afterAll(() => removeTempDirs());

const at = (file: string, seconds: number) => utimesSync(file, seconds, seconds);

describe('isBuildFresh', () => {
  const root = tempDir('build');
  const sources = path.join(root, 'src');
  mkdirSync(path.join(sources, 'nested'), { recursive: true });
  const source = path.join(sources, 'nested', 'a.ts');
  writeFileSync(source, '');
  const entry = path.join(root, 'main.js');

  it('is false without a build', () => {
    expect(isBuildFresh(entry, [sources])).toBe(false);
  });

  it('is true when the build is newer than every source, false once one is edited', () => {
    writeFileSync(entry, '');
    at(source, 1_000);
    at(entry, 2_000);
    expect(isBuildFresh(entry, [sources])).toBe(true);
    at(source, 3_000);
    expect(isBuildFresh(entry, [sources])).toBe(false);
  });

  it('is false when a source folder cannot be read', () => {
    at(entry, 2_000);
    expect(isBuildFresh(entry, [path.join(root, 'missing')])).toBe(false);
  });

  it('holds for this checkout: the tests run the compiled CLI', () => {
    expect(isBuildFresh()).toBe(true);
  });
});

describe('the binary', () => {
  it('runs from the build', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('0.1.0\n');
    expect(BIN).toMatch(/bin[/\\]privcomm\.js$/);
  });
});
