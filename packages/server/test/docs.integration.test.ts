import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/database.ts';
import { launchChromium, requireChromium } from './support/browser.ts';
import { startRelay, type TestRelay } from './support/relay.ts';

let relay: TestRelay;
let database: { url: string; drop: () => Promise<void> };

beforeAll(async () => {
  database = await createTestDatabase();
  relay = await startRelay(database.url);
});
afterAll(async () => {
  await relay?.close();
  await database?.drop();
});

/** Every directive of a Content-Security-Policy header, with its sources. */
const directives = (header: string): Map<string, string[]> =>
  new Map(
    header
      .split(';')
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0])
      .map(([name, ...sources]) => [name!.toLowerCase(), sources]),
  );

/** Sources that name nothing outside the relay: itself, nothing, or inline data. */
const LOCAL_SOURCES = new Set(["'self'", "'none'", 'data:']);

describe('the API docs pages load nothing from outside the relay', () => {
  it.each(['/docs/', '/docs/static/swagger-ui-bundle.js', '/docs/json', '/openapi.json'])(
    '%s is sent with a Content-Security-Policy that names no other host',
    async (route) => {
      const response = await fetch(`${relay.url}${route}`);
      expect(response.status).toBe(200);
      const header = response.headers.get('content-security-policy');
      expect(header, 'no Content-Security-Policy header').toBeTruthy();
      const policy = directives(header!);
      // Everything not named below falls back to default-src, so it must be as strict.
      expect(policy.get('default-src')).toEqual(["'none'"]);
      for (const name of ['frame-ancestors', 'base-uri', 'form-action', 'object-src']) {
        expect(policy.get(name) ?? policy.get('default-src'), name).toEqual(["'none'"]);
      }
      for (const [name, sources] of policy) {
        for (const source of sources) {
          expect(LOCAL_SOURCES.has(source), `${name} allows ${source}`).toBe(true);
        }
      }
    },
  );

  it('the Swagger UI page links only to the relay itself', async () => {
    const html = await (await fetch(`${relay.url}/docs/`)).text();
    const links = [...html.matchAll(/\b(?:src|href)\s*=\s*"([^"]*)"/g)].map((match) => match[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(link, link).not.toMatch(/^(?:[a-z][a-z0-9+.-]*:|\/\/)/i);
  });

  it('/redoc, once ReDoc, now leads to Swagger UI', async () => {
    const response = await fetch(`${relay.url}/redoc`, { redirect: 'manual' });
    expect(response.status).toBe(301);
    expect(response.headers.get('location')).toBe('/docs/');
  });
});

describe('the API docs in a real browser', () => {
  let browser: Browser;

  beforeAll(async () => {
    requireChromium();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  interface Visit {
    readonly page: Page;
    /** Requests for anything but the relay (never sent: the test aborts them). */
    readonly offHost: string[];
    /** What the Content-Security-Policy blocked, as the page reported it. */
    readonly violations: string[];
    readonly consoleErrors: string[];
  }

  const visit = async (route: string): Promise<Visit> => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const origin = new URL(relay.url).origin;
    const offHost: string[] = [];
    const violations: string[] = [];
    const consoleErrors: string[] = [];
    await context.route('**/*', async (request) => {
      const url = request.request().url();
      if (new URL(url).origin === origin) return request.continue();
      offHost.push(url);
      return request.abort();
    });
    await page.exposeFunction('reportViolation', (text: string) => violations.push(text));
    // A string, not a function: this package is typed for Node, without the DOM's names.
    await page.addInitScript({
      content: `document.addEventListener('securitypolicyviolation', (event) =>
        window.reportViolation(event.effectiveDirective + ' blocked ' + event.blockedURI + ' ' + event.sample));`,
    });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    await page.goto(`${relay.url}${route}`);
    return { page, offHost, violations, consoleErrors };
  };

  it('Swagger UI renders every operation and can call the relay, under its policy', async () => {
    const spec = (await (await fetch(`${relay.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const operations = Object.values(spec.paths).flatMap((item) => Object.keys(item)).length;
    const { page, offHost, violations, consoleErrors } = await visit('/docs/');
    await expect.poll(() => page.locator('.opblock').count(), { timeout: 20_000 }).toBe(operations);
    expect(await page.locator('.info .title').innerText()).toContain('privcomm relay');

    // "Try it out" on /health: the page fetches from the relay (connect-src) and shows the answer.
    const health = page.locator('.opblock', {
      has: page.locator('.opblock-summary-path', { hasText: /^\/health$/ }),
    });
    await health.locator('.opblock-summary').click();
    await health.getByRole('button', { name: 'Try it out' }).click();
    await health.getByRole('button', { name: 'Execute' }).click();
    await expect
      .poll(
        () =>
          health
            .locator('.live-responses-table td.response-col_status:not(.col_header)')
            .innerText(),
        {
          timeout: 10_000,
        },
      )
      .toContain('200');

    expect(offHost).toEqual([]);
    expect(violations).toEqual([]);
    expect(consoleErrors).toEqual([]);
    await page.context().close();
  });

  it('/redoc opens the same documentation, loading nothing from outside', async () => {
    const { page, offHost, violations } = await visit('/redoc');
    await page
      .getByRole('heading', { name: /privcomm relay/ })
      .first()
      .waitFor();
    expect(new URL(page.url()).pathname).toBe('/docs/');
    await expect
      .poll(() => page.locator('.opblock').count(), { timeout: 20_000 })
      .toBeGreaterThan(0);
    expect(offHost).toEqual([]);
    expect(violations).toEqual([]);
    await page.context().close();
  });
});
