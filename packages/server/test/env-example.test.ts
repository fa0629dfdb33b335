import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VARIABLES } from '../src/config.ts';

/**
 * .env.example lists every variable the relay reads, each with its default (or empty, for the
 * secrets and URLs) and a comment above it; and the variables deploy/docker-compose.yml uses.
 * Adding a variable to the configuration schema without adding it here fails this test.
 */
const read = (file: string): string =>
  readFileSync(new URL(`../../../${file}`, import.meta.url), 'utf8');

const example = read('.env.example');
const lines = example.split('\n');
const [composePart = '', relayPart = ''] = example.split(/^# --- The relay -+$/m);

/** NAME=value lines, commented out (`# NAME=value`) or not. */
const entries = (text: string): { name: string; value: string; line: string }[] =>
  text.split('\n').flatMap((line) => {
    const match = /^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    return match ? [{ name: match[1] as string, value: match[2] as string, line }] : [];
  });

describe('.env.example', () => {
  it('lists every relay variable once, with its default or empty, under a comment', () => {
    const relay = entries(relayPart);
    expect(relay.map((entry) => entry.name).sort()).toEqual(Object.keys(VARIABLES).sort());
    for (const { name, value, line } of relay) {
      const spec = VARIABLES[name as keyof typeof VARIABLES];
      expect([spec.default, ''], name).toContain(value);
      const above = lines[lines.indexOf(line) - 1] ?? '';
      expect(above, `${name} has no explanation above it`).toMatch(/^# \S/);
      expect(above).not.toMatch(/^# [A-Z][A-Z0-9_]*=/);
    }
  });

  it('leaves every secret empty', () => {
    for (const { name, value } of entries(example)) {
      if (/SECRET|PASSWORD|TOKEN/.test(name)) expect(value, name).toBe('');
    }
  });

  it('lists every variable deploy/docker-compose.yml substitutes', () => {
    const used = new Set(
      [...read('deploy/docker-compose.yml').matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map(
        (match) => match[1],
      ),
    );
    const listed = new Set(entries(composePart).map((entry) => entry.name));
    for (const name of used) expect(listed, name).toContain(name);
    for (const name of listed) expect(used, `${name} is listed but unused`).toContain(name);
  });
});
