import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const directory = mkdtempSync(join(tmpdir(), 'privcomm-kotlin-engine-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** A new SQLite file path for a store, removed after the test file. */
export const newStoreFile = (): string => join(directory, `${randomUUID()}.sqlite`);
