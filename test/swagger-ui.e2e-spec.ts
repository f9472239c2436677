import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from './support/app';
import { Body, expectStatus } from './support/jobs';

// Issue #12: the Swagger UI flow a new user follows, in a real browser (playwright-core
// driving the system's Chromium): Authorize with a client key, "Try it out" on
// POST /v1/jobs with a paid job, see 201 and `payment_status: escrowed`, then read the
// job back with "Try it out" on GET /v1/jobs/{job_id}. A screenshot is kept in
// test-artifacts/ (git-ignored).

/** Where Debian and Ubuntu put Chromium; CHROMIUM_PATH names any other. */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const ARTIFACTS = resolve(__dirname, '../test-artifacts');
/** Every wait is on an element or a condition, bounded generously for a loaded machine. */
const WAIT_MS = 60_000;

const INSTALL_HINT =
  'Install it (Debian/Ubuntu: `sudo apt-get install -y chromium`) or point CHROMIUM_PATH= at a Chromium binary.';

/**
 * The Chromium to drive. None found is a failure, never a skip: the flow this test
 * covers would otherwise go untested without anyone noticing.
 */
function chromiumPath(configured = process.env.CHROMIUM_PATH, candidates = CANDIDATES): string {
  if (configured) {
    if (!existsSync(configured)) throw new Error(`CHROMIUM_PATH=${configured}: no such file. ${INSTALL_HINT}`);
    return configured;
  }
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      `No Chromium for the Swagger UI browser test (looked at ${candidates.join(', ')}). ${INSTALL_HINT}`,
    );
  }
  return found;
}

describe('Chromium for the browser test', () => {
  it('none found is a failure that says how to install it, not a skip', () => {
    expect(() => chromiumPath('', ['/nonexistent/chromium'])).toThrow(/apt-get install -y chromium.*CHROMIUM_PATH=/);
    expect(() => chromiumPath('/nonexistent/chromium')).toThrow(/CHROMIUM_PATH=\/nonexistent\/chromium: no such file/);
  });
});

describe('Swagger UI in a browser', () => {
  let t: TestApp | undefined;
  let browser: Browser | undefined;
  let baseUrl: string;

  beforeAll(async () => {
    const executablePath = chromiumPath();
    const saved = { ...process.env };
    try {
      t = await startTestApp();
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
    await t.app.listen(0, '127.0.0.1');
    baseUrl = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath,
      timeout: WAIT_MS,
      // No background traffic: in a closed network Chromium's own connections are refused and get in the way.
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    await mkdir(ARTIFACTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('Authorize with a client key, create a paid job with "Try it out" (201, escrowed), read it back', async () => {
    const app = t as TestApp;
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 1600 } });
    page.setDefaultTimeout(WAIT_MS);
    try {
      await page.goto(`${baseUrl}/docs`, { waitUntil: 'load' });
      await page.locator('.swagger-ui .info .title').filter({ hasText: 'Coordinator payments API' }).waitFor();

      // Authorize: the X-Api-Key scheme, with the client's key.
      await page.locator('.swagger-ui .auth-wrapper button.authorize').click();
      const modal = page.locator('.swagger-ui .dialog-ux .modal-ux');
      await modal.locator('input[type="text"], input[type="password"]').first().fill(app.keys.client);
      await modal.locator('button.modal-btn.authorize').click();
      await modal.locator('button.btn-done').click();
      await modal.waitFor({ state: 'detached' });

      // POST /v1/jobs: Try it out with a paid job, Execute.
      const create = operation(page, 'post', '/v1/jobs');
      await open(create);
      const body = {
        payload: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello from Swagger UI' } },
        ttl_seconds: 900,
        payment_amount: '0.001',
        payment_currency: 'BTC',
      };
      await create.locator('textarea.body-param__text').fill(JSON.stringify(body, null, 2));
      const created = await execute(create, 201);
      expect(created).toMatchObject({
        client_id: app.principals.client,
        state: 'queued',
        payment_status: 'escrowed',
        payment_amount: '0.00100000',
        payment_currency: 'BTC',
        payload: body.payload,
      });

      // GET /v1/jobs/{job_id}: Try it out with the new job's id.
      const read = operation(page, 'get', '/v1/jobs/{job_id}');
      await open(read);
      await read.locator('tr[data-param-name="job_id"] input').fill(created.job_id);
      const readBack = await execute(read, 200);
      expect(readBack).toMatchObject({
        job_id: created.job_id,
        payment_id: created.payment_id,
        payment_status: 'escrowed',
      });

      await page.screenshot({ path: join(ARTIFACTS, 'swagger-flow.png'), fullPage: true });
      await read.screenshot({ path: join(ARTIFACTS, 'swagger-flow-read.png') });
      // What the browser showed is what the API holds.
      const job = expectStatus(
        await app.http.get(`/v1/jobs/${created.job_id}`).set('X-Api-Key', app.keys.client),
        200,
        'GET /v1/jobs/{job_id}',
      );
      expect(job).toMatchObject({ payment_status: 'escrowed', payment_amount: '0.00100000' });
    } catch (error) {
      await page.screenshot({ path: join(ARTIFACTS, 'swagger-flow-failure.png'), fullPage: true }).catch(() => {});
      throw error;
    } finally {
      await page.close();
    }
  }, 240_000);
});

/** The operation block of `method path` in Swagger UI. */
function operation(page: Page, method: string, path: string): Locator {
  return page.locator(`.swagger-ui .opblock.opblock-${method}`).filter({
    has: page.locator(`.opblock-summary-path[data-path="${path}"]`),
  });
}

/** Expands an operation and presses "Try it out". */
async function open(op: Locator): Promise<void> {
  await op.locator('.opblock-summary').first().click();
  await op.locator('button.try-out__btn').click();
}

/** Presses Execute and returns the rendered response body, once a response is shown, after checking its status. */
async function execute(op: Locator, status: number): Promise<Body> {
  await op.locator('button.execute').click();
  const live = op.locator('.responses-wrapper .live-responses-table');
  const shownStatus = live.locator('tbody .response-col_status').first();
  await shownStatus.waitFor();
  const text = await live.locator('.response-col_description pre.microlight').first().innerText();
  expect({ status: (await shownStatus.innerText()).trim(), body: text }).toEqual({
    status: expect.stringMatching(new RegExp(`^${status}\\b`)),
    body: expect.any(String),
  });
  return JSON.parse(text);
}
