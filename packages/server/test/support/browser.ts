import { spawnSync } from 'node:child_process';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = process.env.PRIVCOMM_CHROMIUM ?? '/usr/bin/chromium';

/** Fails with an explanation when Chromium is missing: the docs pages need a real browser. */
export const requireChromium = (): void => {
  if (spawnSync(CHROMIUM, ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error(
      `Chromium is not installed (${CHROMIUM} does not run): the API docs tests render the pages in a real browser. ` +
        'Install it with `apt-get install chromium` (.ci/run does), or point PRIVCOMM_CHROMIUM at one.',
    );
  }
};

/**
 * A headless Chromium that never reaches outside this machine by itself: no QUIC, no background
 * networking, no component updates (Playwright adds the latter two as well; they are named here
 * because the tests depend on them).
 */
export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
