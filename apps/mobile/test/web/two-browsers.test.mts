/**
 * The web build in a real browser (Debian's Chromium through playwright-core): two pages, each
 * with its own `privcomm daemon --web-bridge` (its own profile: engine, store, login key), against
 * real relays (test/support/relay-process.mts, as the jest tests use). Alice and Bob register,
 * add each other, write both ways, and find the same safety number. Every main screen is saved
 * to docs/screenshots/ (README shows them; PRIVCOMM_SCREENSHOTS names another folder).
 *
 * Run: `npm run test:web` (exports the web build into dist-web/, then runs this file with
 * node:test). Needs /usr/bin/chromium (`apt-get install -y chromium`); PRIVCOMM_CHROMIUM names
 * another binary.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

const APP = fileURLToPath(new URL('../..', import.meta.url));
const EXPORT_DIR = process.env.PRIVCOMM_WEB_EXPORT ?? path.join(APP, 'dist-web');
/** README's pictures; CI writes them elsewhere, so that its checkout stays as it was. */
const SCREENSHOTS = process.env.PRIVCOMM_SCREENSHOTS ?? path.join(APP, 'docs', 'screenshots');
const CLI = path.resolve(APP, '../cli/bin/privcomm.js');
const CHROMIUM = process.env.PRIVCOMM_CHROMIUM ?? '/usr/bin/chromium';
/** A step in the page that takes longer than this fails the test (the relay is local). */
const STEP_MS = 30_000;

// The jest tests' relay process (an embedded PostgreSQL and a relay), with the open relay only
// (and its coturn, for the call): this test needs no invitation.
process.env.PRIVCOMM_TEST_RELAYS = 'open';
const require = createRequire(import.meta.url);
const startRelays: () => Promise<void> = require('../support/global-setup.js');
const stopRelays: () => Promise<void> = require('../support/global-teardown.js');

const temp = mkdtempSync(path.join(tmpdir(), 'privcomm-web-'));
const bridges: ChildProcess[] = [];
let site: Server;
let siteUrl: string;
let context: BrowserContext;
const pageErrors: string[] = [];
/** Seconds spent, printed as a diagnostic (never asserted). */
const setupStarted = performance.now();
let setupSeconds = 0;
const seconds = (from: number): string => ((performance.now() - from) / 1000).toFixed(1);

interface Bridge {
  readonly url: string;
  readonly secret: string;
}

/** `privcomm daemon --web-bridge` on a new profile; resolves with the address it prints. */
const startBridge = (name: string): Promise<Bridge> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [CLI, '--json', '--profile', path.join(temp, name), 'daemon', '--web-bridge'],
      {
        // NODE_ENV: required by Expo's ProcessEnv type; nothing of privcomm reads it.
        env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', HOME: temp },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    bridges.push(child);
    let out = '';
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = out.split('\n').find((l) => l.includes('"web-bridge"'));
      if (line) resolve(JSON.parse(line) as Bridge);
    });
    child.once('exit', (code) => reject(new Error(`the ${name} bridge exited (${code}): ${err}`)));
  });

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.ttf': 'font/ttf',
  '.ico': 'image/x-icon',
};

/** The exported web build on loopback (a test fixture: the bridge itself never serves the app). */
const serveExport = (): Promise<Server> =>
  new Promise((resolve) => {
    const server = createServer((request, response) => {
      const wanted = path.normalize(
        decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname),
      );
      let file = path.join(EXPORT_DIR, wanted);
      if (!file.startsWith(EXPORT_DIR) || !existsSync(file) || statSync(file).isDirectory())
        file = path.join(EXPORT_DIR, 'index.html');
      response
        .writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' })
        .end(readFileSync(file));
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });

/** Opens the app in a new page, connected to `bridge` through the address's fragment. */
const openApp = async (bridge: Bridge): Promise<Page> => {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  await page.goto(`${siteUrl}/#bridge=${encodeURIComponent(bridge.url)}&secret=${bridge.secret}`);
  return page;
};

const screenshot = (page: Page, name: string): Promise<Buffer> =>
  page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });

const button = (page: Page, name: string) => page.getByRole('button', { name, exact: true });

/** Onboarding: relay address and name, then the conversation list; returns the account id. */
const register = async (page: Page, name: string, shoot: boolean): Promise<string> => {
  await page.getByLabel('Relay address').fill(process.env.PRIVCOMM_TEST_RELAY_URL ?? '');
  await page.getByLabel('Your name').fill(name);
  if (shoot) await screenshot(page, 'onboarding');
  await button(page, 'Create account').click();
  const own = page.getByLabel(/^Your account id /);
  await own.waitFor();
  const label = (await own.getAttribute('aria-label')) ?? '';
  return label.replace('Your account id ', '');
};

const addContact = async (page: Page, name: string, accountId: string, shoot: boolean) => {
  await button(page, 'Add contact').click();
  await page.getByLabel("Contact's name").fill(name);
  await page.getByLabel("Contact's account id").fill(accountId);
  if (shoot) await screenshot(page, 'add-contact');
  await button(page, 'Add').click();
  // Adding opens the chat with the new contact.
  await page.getByLabel('Message', { exact: true }).waitFor();
};

const send = async (page: Page, text: string) => {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await button(page, 'Send').click();
};

/**
 * The loudness (RMS, 0 to 1) of the peer's audio as this page plays it: the <audio> element of
 * the web build's call media (browser-calls.ts), measured through Web Audio for a moment.
 */
const remoteLoudness = (page: Page): Promise<number> =>
  page.evaluate(async () => {
    const audio = document.getElementById('privcomm-remote-audio') as HTMLAudioElement | null;
    const stream = audio?.srcObject;
    if (!(stream instanceof MediaStream)) return -1;
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    // Chromium's fake microphone beeps now and then: windows of 2048 samples (about 43 ms) read
    // every 40 ms for 3 s cover the whole time, so no beep falls between two reads.
    let loudest = 0;
    for (let i = 0; i < 75; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
      loudest = Math.max(loudest, rms);
    }
    await context.close();
    return loudest;
  });

/** The 60 digits of the safety-number screen, opened from the chat. */
const safetyNumber = async (page: Page, shoot: boolean): Promise<string> => {
  await button(page, 'Safety number').click();
  const digits = page.getByTestId('safety-digits');
  await digits.waitFor();
  if (shoot) await screenshot(page, 'safety-number');
  const label = (await digits.getAttribute('aria-label')) ?? '';
  return label.replace('Safety number: ', '').replace(/\s/g, '');
};

before(async () => {
  assert.ok(
    existsSync(path.join(EXPORT_DIR, 'index.html')),
    `no web build in ${EXPORT_DIR}: run "npm run export:web" first (or "npm run test:web")`,
  );
  mkdirSync(SCREENSHOTS, { recursive: true });
  await startRelays();
  site = await serveExport();
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  context = await chromium.launchPersistentContext(path.join(temp, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 400, height: 760 },
    // Without these Chromium keeps calling outside hosts (updates, sync, field trials).
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Calls: the microphone allowed without a prompt, and a fake one (a beeping tone).
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  setupSeconds = Number(seconds(setupStarted));
});

after(async () => {
  await context?.close();
  site?.close();
  for (const child of bridges) {
    if (child.exitCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await stopRelays();
  rmSync(temp, { recursive: true, force: true });
});

test('two browser pages register, add each other, write both ways, call, and compare safety numbers', async (t) => {
  const started = performance.now();
  const [aliceBridge, bobBridge] = await Promise.all([startBridge('alice'), startBridge('bob')]);
  const alice = await openApp(aliceBridge);
  const bob = await openApp(bobBridge);

  const aliceId = await register(alice, 'Alice', true);
  const bobId = await register(bob, 'Bob', false);
  assert.notEqual(aliceId, bobId);
  await screenshot(alice, 'conversations-empty');

  await addContact(alice, 'Bob', bobId, true);
  await addContact(bob, 'Alice', aliceId, false);

  // Each chat is open on the other page, so each message is read at once, and its sender's
  // page says so.
  await send(alice, 'Hello Bob, from a browser');
  await bob.getByLabel('Alice: Hello Bob, from a browser').waitFor();
  await alice.getByLabel('You: Hello Bob, from a browser, read').waitFor();
  await send(bob, 'Hi Alice! Safety numbers next?');
  await alice.getByLabel('Bob: Hi Alice! Safety numbers next?').waitFor();
  await bob.getByLabel('You: Hi Alice! Safety numbers next?, read').waitFor();
  await screenshot(alice, 'chat');

  // A call through the browsers' own WebRTC, relay-only (nobody is verified yet) through the
  // relay's coturn: outgoing, ringing, answered, connected with audio, hung up.
  await button(alice, 'Call').click();
  await alice.getByText('Calling Bob…', { exact: true }).waitFor();
  await screenshot(alice, 'call-outgoing');
  await bob.getByText('Alice is calling', { exact: true }).waitFor();
  await screenshot(bob, 'call-incoming');
  await button(bob, 'Answer').click();
  await bob.getByText('In call with Alice', { exact: true }).waitFor();
  await alice.getByText('In call with Bob', { exact: true }).waitFor();
  await alice.getByLabel(/^Call duration 0:0[1-9]$/).waitFor();
  await screenshot(alice, 'call');
  // Chromium's fake microphone beeps: each page hears the other's beeps.
  const heardByBob = await remoteLoudness(bob);
  const heardByAlice = await remoteLoudness(alice);
  t.diagnostic(`remote audio RMS: Bob hears ${heardByBob}, Alice hears ${heardByAlice}`);
  assert.ok(heardByBob > 0.01, `Bob hears nothing from Alice (RMS ${heardByBob})`);
  assert.ok(heardByAlice > 0.01, `Alice hears nothing from Bob (RMS ${heardByAlice})`);
  await button(alice, 'Hang up').click();
  await alice.getByText('Bob: Call ended · media went through the relay').waitFor();
  await bob.getByText('Alice: Call ended · media went through the relay').waitFor();
  await button(alice, 'Dismiss').click();
  await button(bob, 'Dismiss').click();

  const aliceNumber = await safetyNumber(alice, true);
  const bobNumber = await safetyNumber(bob, false);
  assert.match(aliceNumber, /^\d{60}$/);
  assert.equal(aliceNumber, bobNumber);
  await button(alice, 'Mark as verified').click();

  await button(alice, 'Back').click();
  await button(alice, 'Back').click();
  await alice.getByTestId(`conversation-${bobId}`).waitFor();
  await screenshot(alice, 'conversations');
  await button(alice, 'Devices').click();
  // The list comes from the relay: this page's own device, once it has answered.
  await alice.getByLabel(/^Primary device, this phone, added /).waitFor();
  await screenshot(alice, 'linked-devices');

  assert.deepEqual(pageErrors, []);
  t.diagnostic(
    `relays and browser ${setupSeconds} s; bridges, pages and the flow ${seconds(started)} s`,
  );
});

test('a page without the bridge, or with a secret from another run, says what to do', async () => {
  const bridge = await startBridge('refused');
  const none = await context.newPage();
  await none.goto(`${siteUrl}/`);
  await none.getByText('privcomm cannot start').waitFor();
  await none
    .getByText(/The web build needs a bridge: start "privcomm daemon --web-bridge"/)
    .waitFor();
  const wrong = await openApp({ url: bridge.url, secret: '0'.repeat(64) });
  await wrong
    .getByText(
      /cannot open the bridge at ws:\/\/127\.0\.0\.1:\d+\/: it is not running, or refused this page/,
    )
    .waitFor();
  await Promise.all([none.close(), wrong.close()]);
  assert.deepEqual(pageErrors, []);
});
