import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, ERRORS } from '@privcomm/wire';
import { VARIABLES } from '../src/config.ts';
import { readMigrations } from '../src/db/migrate.ts';

const read = (file: string): string =>
  readFileSync(new URL(`../../../${file}`, import.meta.url), 'utf8');

/** The catalogues in code and their documentation must not drift apart. */
describe('documentation matches the code', () => {
  const protocol = read('docs/protocol.md');
  const configuration = read('docs/configuration.md');

  it.each(Object.entries(ERRORS))(
    'docs/protocol.md documents error %s with its status',
    (code, { status }) => {
      const row = protocol.split('\n').find((line) => line.startsWith(`| \`${code}\``));
      expect(row, `no table row for ${code}`).toBeDefined();
      expect(row).toMatch(new RegExp(`\\|\\s*${status}\\s*\\|`));
    },
  );

  it.each(Object.entries(CLOSE_CODES))('docs/protocol.md documents close code %s', (name, code) => {
    const row = protocol.split('\n').find((line) => line.startsWith(`| ${code} `));
    expect(row, `no table row for ${code}`).toBeDefined();
    if (code >= 4000) expect(row).toContain(name);
  });

  it.each(Object.entries(VARIABLES))(
    'docs/configuration.md documents %s and its default',
    (name, { default: value }) => {
      const row = configuration.split('\n').find((line) => line.startsWith(`| \`${name}\``));
      expect(row, `no table row for ${name}`).toBeDefined();
      if (value !== '') expect(row).toContain(value);
    },
  );

  it.each(readMigrations())(
    'docs/upgrading.md says what rolling back $tag loses',
    ({ tag, dataLoss }) => {
      const row = read('docs/upgrading.md')
        .split('\n')
        .find((line) => line.startsWith(`| \`${tag}\``));
      expect(row, `no table row for ${tag}`).toBeDefined();
      if (dataLoss === undefined) expect(row).toMatch(/\| nothing\s*\|$/);
      else expect(row).not.toMatch(/\| nothing\s*\|$/);
    },
  );
});
