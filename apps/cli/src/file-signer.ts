import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { AuthSigner } from '@privcomm/client';

/** The key file is not a readable Ed25519 private key. */
export class SignerFileError extends Error {
  override readonly name = 'SignerFileError';
}

/**
 * The device's Ed25519 authentication key (it signs the relay's login challenges; it is not
 * the Signal identity), kept as a PKCS#8 PEM file with mode 0600.
 */
export class FileSigner implements AuthSigner {
  private constructor(private readonly privateKey: KeyObject) {}

  /** Reads an existing key file; throws SignerFileError if it is not an Ed25519 private key. */
  static load(file: string): FileSigner {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: readFileSync(file), format: 'pem' });
    } catch (error) {
      throw new SignerFileError(`cannot read the key: ${(error as Error).message}`);
    }
    if (key.asymmetricKeyType !== 'ed25519')
      throw new SignerFileError(
        `it holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`,
      );
    return new FileSigner(key);
  }

  /** Creates a new key file (mode 0600); fails if the file exists rather than replacing it. */
  static create(file: string): FileSigner {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeSync(fd, pem);
    } finally {
      closeSync(fd);
    }
    return new FileSigner(privateKey);
  }

  async publicKey(): Promise<Uint8Array> {
    const der = createPublicKey(this.privateKey).export({ format: 'der', type: 'spki' });
    // SPKI for Ed25519 is a fixed 12-byte header followed by the raw 32-byte key.
    return new Uint8Array(der.subarray(der.length - 32));
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(sign(null, message, this.privateKey));
  }
}
