import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'node:http';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { NodeCallMedia, nodeWebRtc, openNodeEngine, toneSource } from '@privcomm/engine-node';
import { useEffect } from 'react';
import type { CallMedia } from '@privcomm/client';
import type { AudioRoute, DevicePlatform, QrScanner } from '../../src/platform/platform.ts';
import type { SecretStore } from '../../src/platform/secrets.ts';
import type { SqlValue } from '@privcomm/client';
import { openAppStore, type ExpoSqliteDatabase } from '../../src/platform/expo-sqlite-driver.ts';
import { createTransport } from '../../src/platform/transport.ts';

const bind = (params: SqlValue[]) =>
  params.map((value) => (value instanceof Uint8Array ? Buffer.from(value) : value));

/** expo-sqlite's calls on a real SQLite (better-sqlite3), for the store under Node. */
export const betterSqlite = (file = ':memory:'): ExpoSqliteDatabase => {
  const db = new Database(file);
  return {
    execAsync: async (source) => {
      db.exec(source);
    },
    runAsync: async (source, ...params) => ({
      changes: db.prepare(source).run(...bind(params)).changes,
    }),
    // expo-sqlite runs a statement that returns no rows (an unknown PRAGMA) and gives no rows;
    // better-sqlite3 would throw: answer as expo-sqlite does.
    getAllAsync: async <T>(source: string, ...params: SqlValue[]) => {
      const statement = db.prepare(source);
      if (!statement.reader) {
        statement.run(...bind(params));
        return [];
      }
      return statement.all(...bind(params)) as T[];
    },
    getFirstAsync: async <T>(source: string, ...params: SqlValue[]) => {
      const statement = db.prepare(source);
      if (!statement.reader) {
        statement.run(...bind(params));
        return null;
      }
      return (statement.get(...bind(params)) as T | undefined) ?? null;
    },
    closeAsync: async () => {
      db.close();
    },
  };
};

/** expo-secure-store's calls on a Map; `entries` lets a test see what was stored. */
export const memorySecrets = (): SecretStore & { entries: Map<string, string> } => {
  const entries = new Map<string, string>();
  return {
    entries,
    getItemAsync: async (key) => entries.get(key) ?? null,
    setItemAsync: async (key, value) => {
      entries.set(key, value);
    },
    deleteItemAsync: async (key) => {
      entries.delete(key);
    },
  };
};

/**
 * Node's HTTP client in fetch's shape. jest-expo replaces the global fetch with Expo's, which
 * has no native side under Jest; the app's transport is tested over this instead.
 */
export const nodeHttpFetch = ((url: string, init: RequestInit = {}) =>
  new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers as Record<string, string>,
        signal: init.signal ?? undefined,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: async () => Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (typeof init.body === 'string') req.write(init.body);
    req.end();
  })) as unknown as typeof globalThis.fetch;

/**
 * One phone, as the tests see it: the real Node SignalEngine (libsignal) in memory, the app's
 * SQLite store on better-sqlite3, the app's transport over Node's fetch and `ws`.
 */
export interface TestPlatformOptions {
  /** The call's audio (a 440 Hz tone by default); may throw as a refused microphone does. */
  readonly media?: () => CallMedia;
  readonly scanner?: QrScanner;
  readonly audioRoute?: AudioRoute;
  /**
   * A folder for the engine's and the store's files, so that the phone keeps them across a
   * restart (the same platform rendered again); without one, both are in memory.
   */
  readonly dir?: string;
}

/** Where a phone with a folder keeps its engine and its store. */
export const ENGINE_FILE = 'engine.sqlite';
export const STORE_FILE = 'privcomm.db';

export const testPlatform = (
  options: TestPlatformOptions = {},
): DevicePlatform & { secrets: ReturnType<typeof memorySecrets> } => ({
  openEngine: () => openNodeEngine(options.dir ? join(options.dir, ENGINE_FILE) : ':memory:'),
  openStore: () =>
    openAppStore(betterSqlite(options.dir ? join(options.dir, STORE_FILE) : ':memory:')),
  secrets: memorySecrets(),
  transport: (relayUrl) =>
    createTransport(relayUrl, {
      fetch: nodeHttpFetch,
      WebSocket: WebSocket as unknown as new (url: string) => unknown,
    }),
  randomBytes: (length) => new Uint8Array(randomBytes(length)),
  // Real WebRTC (libwebrtc through @roamhq/wrtc); a 440 Hz tone stands in for the microphone.
  calls: {
    webrtc: nodeWebRtc(),
    media: options.media ?? (() => new NodeCallMedia(toneSource(440))),
  },
  ...(options.scanner ? { scanner: options.scanner } : {}),
  ...(options.audioRoute ? { audioRoute: options.audioRoute } : {}),
});

/**
 * A QR scanner the test drives: `scan(text)` is what the camera would read while the app shows
 * the scanner; `granted: false` is a refused camera permission.
 */
export const drivenScanner = (granted = true) => {
  let onScanned: ((data: string) => void) | undefined;
  const View = ({ onScanned: handler }: { onScanned: (data: string) => void }) => {
    useEffect(() => {
      onScanned = handler;
      return () => {
        onScanned = undefined;
      };
    }, [handler]);
    return null;
  };
  const scanner: QrScanner = { requestPermission: async () => granted, View };
  return {
    scanner,
    /** The app shows the scanner (its camera view has mounted and listens). */
    get showing(): boolean {
      return onScanned !== undefined;
    },
    scan(data: string): void {
      if (!onScanned) throw new Error('the app is not showing the scanner');
      onScanned(data);
    },
  };
};

export const restartableRelayUrl = (): string => required('PRIVCOMM_TEST_RESTARTABLE_RELAY_URL');

/** Stops the restartable relay (as its operator's restart does), or starts it again. */
export const restartableRelay = (action: 'stop' | 'start'): void => {
  process.kill(
    Number(required('PRIVCOMM_TEST_RELAYS_PID')),
    action === 'stop' ? 'SIGUSR1' : 'SIGUSR2',
  );
};

export const relayUrl = (): string => required('PRIVCOMM_TEST_RELAY_URL');
export const inviteRelayUrl = (): string => required('PRIVCOMM_TEST_INVITE_RELAY_URL');
export const inviteCodes = (): string[] => required('PRIVCOMM_TEST_INVITE_CODES').split(',');
export const relayDatabaseUrl = (): string => required('PRIVCOMM_TEST_RELAY_DATABASE_URL');

const required = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: the tests run through jest's globalSetup`);
  return value;
};
