import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { locateToolchain } from '../src/index.ts';
import { newStoreFile } from './support.ts';

/**
 * The store file holds no private key, session, sender key or plaintext in the clear: each
 * private record is sealed (AES-GCM) by the SecretSealer, on a phone under a non-exportable
 * Keystore key. The check itself runs in Kotlin (kotlin/jvm/SecretsAtRestCheck.kt), where the secrets can be read
 * back through the sealer; the unsealed run shows that the search finds secrets that are there.
 */
const check = (mode: 'sealed' | 'unsealed'): { secrets: number; found: string[] } => {
  const output = execFileSync(
    'java',
    ['-cp', locateToolchain().classpath, 'org.privcomm.engine.jvm.SecretsAtRestCheckKt'].concat(
      newStoreFile(),
      mode,
    ),
    { encoding: 'utf8' },
  );
  return JSON.parse(output.trim().split('\n').pop() ?? '') as { secrets: number; found: string[] };
};

describe('kotlin engine: secrets at rest', () => {
  it('keeps every private key, session, sender key and plaintext out of the SQLite file in the clear', () => {
    const sealed = check('sealed');
    // identity, trust root, server key, provisioning key, 5 + 1 prekeys (one used), 1 signed,
    // 1 last-resort + 2 one-time Kyber (one used), 1 session, 2 plaintexts (pairwise, group),
    // its own sender key (chain key, private signing key, the chain's start in its first
    // distribution message) and one received (chain key)
    expect(sealed.secrets).toBeGreaterThanOrEqual(17);
    expect(sealed.found).toEqual([]);
  });

  it('finds them all when the records are stored unsealed (the control)', () => {
    const unsealed = check('unsealed');
    expect(unsealed.found).toHaveLength(unsealed.secrets);
    // The group secrets are among those looked for.
    expect(unsealed.found).toEqual(
      expect.arrayContaining([
        'group plaintext',
        'own sender chain key 0',
        'own sender signing key 0',
        'own sender chain start',
        'received sender chain key 0',
      ]),
    );
  });
});
