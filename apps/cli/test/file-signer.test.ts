import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSigner, SignerFileError } from '../src/file-signer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'privcomm-signer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** SPKI header of an Ed25519 public key: a raw 32-byte key appended makes a DER key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

describe('FileSigner', () => {
  it('creates a 0600 PKCS#8 key whose signatures verify with its raw public key', async () => {
    const file = path.join(dir, 'auth.key');
    const signer = FileSigner.create(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const raw = await signer.publicKey();
    expect(raw).toHaveLength(32);
    const message = new TextEncoder().encode('challenge');
    const signature = await signer.sign(message);
    const publicKey = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
      format: 'der',
      type: 'spki',
    });
    expect(verify(null, message, publicKey, signature)).toBe(true);

    const loaded = FileSigner.load(file);
    expect(await loaded.publicKey()).toEqual(raw);
    expect(verify(null, message, publicKey, await loaded.sign(message))).toBe(true);
  });

  it('never replaces an existing key file', () => {
    const file = path.join(dir, 'existing.key');
    writeFileSync(file, 'keep me');
    expect(() => FileSigner.create(file)).toThrow(/EEXIST/);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('refuses a damaged file or another kind of key', () => {
    const garbage = path.join(dir, 'garbage.key');
    writeFileSync(garbage, 'not a key');
    expect(() => FileSigner.load(garbage)).toThrow(SignerFileError);
    const x25519 = path.join(dir, 'x25519.key');
    writeFileSync(
      x25519,
      generateKeyPairSync('x25519').privateKey.export({ format: 'pem', type: 'pkcs8' }),
    );
    expect(() => FileSigner.load(x25519)).toThrow(/x25519 key, not Ed25519/);
  });
});
