import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RELAY_NODE_FLAGS } from '../src/node-flags.ts';

const repository = (file: string): string =>
  readFileSync(new URL(`../../../${file}`, import.meta.url), 'utf8');
const startScript = (file: string): string =>
  (JSON.parse(repository(file)) as { scripts: { start: string } }).scripts.start;

/** The arguments node gets before the relay's entry point, from a command line as written. */
const nodeFlags = (command: string, entry: string): string[] => {
  const words = command.split(/\s+/).filter(Boolean);
  const node = words.findIndex((word) => /(^|\/)node$/.test(word));
  const at = words.indexOf(entry);
  expect({ command, node: node >= 0, entryAfterNode: at > node }).toEqual({
    command,
    node: true,
    entryAfterNode: true,
  });
  return words.slice(node + 1, at).filter((word) => !['--import', 'tsx'].includes(word));
};

describe('the Node flags the relay runs with (src/node-flags.ts)', () => {
  it('are the same wherever it is started: npm start, the image, the systemd unit', () => {
    const dockerCmd = /^CMD (\[.*\])$/m.exec(repository('Dockerfile'))?.[1];
    const execStart = /^ExecStart=(.*)$/m.exec(repository('deploy/privcomm-relay.service'))?.[1];
    expect(dockerCmd).toBeDefined();
    expect(execStart).toBeDefined();
    const started = {
      root: nodeFlags(startScript('package.json'), 'packages/server/src/main.ts'),
      server: nodeFlags(startScript('packages/server/package.json'), 'src/main.ts'),
      image: nodeFlags(
        (JSON.parse(dockerCmd as string) as string[]).join(' '),
        'dist/bin/main.mjs',
      ),
      systemd: nodeFlags(execStart as string, 'dist/bin/main.mjs'),
    };
    const flags = [...RELAY_NODE_FLAGS];
    expect(started).toEqual({ root: flags, server: flags, image: flags, systemd: flags });
  });

  it('are accepted by this node (it refuses an unknown one)', () => {
    const run = (flags: readonly string[]) =>
      spawnSync(process.execPath, [...flags, '-e', ''], { encoding: 'utf8' });
    const relay = run(RELAY_NODE_FLAGS);
    expect({ status: relay.status, stderr: relay.stderr }).toEqual({ status: 0, stderr: '' });
    expect(run(['--max-semi-space-sise=32']).status).not.toBe(0);
  });
});
