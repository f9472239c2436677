import type { Response } from 'supertest';
import type { KeyName } from './support/app';
import { newAddress } from './support/daemon';
import { expectErrorShape, expectStatus, JobsApi, PAYLOAD, useTestApp } from './support/jobs';
import { registeredRoutes } from './support/routes';

// Who may call what (docs/roles.md), driven by one table:
// every route of the app × every kind of caller. A route without a row fails the suite.

type Role = 'client' | 'miner' | 'admin';

interface RouteRow {
  method: 'GET' | 'POST' | 'DELETE';
  /** OpenAPI form: `{job_id}`, `{payment_id}`. */
  path: string;
  /** `public`: no key needed; otherwise the roles allowed. */
  access: 'public' | readonly Role[];
  /** The resource belongs to a client: another client gets 404, never 403. */
  owned?: boolean;
  /** A miner may read it once it is paid to that miner: the table's escrowed payment is a 404 to it, never a 403. */
  paidMiner?: boolean;
  body?: (ids: Ids) => object;
  /**
   * Each caller acts on a fresh paid job of the owner (queued, escrowed), so the route's
   * own answer for an allowed caller is known exactly: `ok`.
   */
  fresh?: { ok: number };
  /** Each caller acts on a fresh webhook endpoint of the owner (a delete removes it): `ok`. */
  freshEndpoint?: { ok: number };
}

interface Ids {
  job_id: string;
  payment_id: string;
  payout_address: string;
  /** A webhook endpoint of the owner, and one of its deliveries. */
  endpoint_id: string;
  delivery_id: string;
}

const ROUTES: readonly RouteRow[] = [
  { method: 'POST', path: '/v1/jobs', access: ['client'], body: () => ({ payload: PAYLOAD }) },
  { method: 'POST', path: '/v1/jobs/batch', access: ['client'], body: () => ({ items: [{ payload: PAYLOAD }] }) },
  { method: 'GET', path: '/v1/jobs', access: ['client', 'admin'] },
  { method: 'GET', path: '/v1/jobs/{job_id}', access: ['client', 'admin'], owned: true },
  { method: 'GET', path: '/v1/jobs/{job_id}/payment', access: ['client', 'admin'], owned: true },
  {
    method: 'POST',
    path: '/v1/payments',
    access: ['client'],
    owned: true,
    body: (ids) => ({ job_id: ids.job_id, amount: '0.001' }),
  },
  { method: 'GET', path: '/v1/payments/{payment_id}', access: ['client', 'admin'], owned: true },
  {
    method: 'GET',
    path: '/v1/payments/{payment_id}/receipt',
    access: ['client', 'miner', 'admin'],
    owned: true,
    paidMiner: true,
  },
  { method: 'GET', path: '/v1/payments', access: ['client', 'admin'] },
  { method: 'GET', path: '/v1/payments/summary', access: ['client', 'miner', 'admin'] },
  { method: 'GET', path: '/v1/payments/export', access: ['client', 'admin'] },
  { method: 'GET', path: '/v1/events', access: ['client', 'admin'] },
  { method: 'GET', path: '/v1/admin/reconciliation', access: ['admin'] },
  { method: 'GET', path: '/v1/miners/me/payouts', access: ['miner'] },
  { method: 'GET', path: '/v1/payments/{payment_id}/events', access: ['client', 'admin'], owned: true },
  {
    method: 'POST',
    path: '/v1/miners/register',
    access: ['miner'],
    body: (ids) => ({ payout_address: ids.payout_address }),
  },
  { method: 'POST', path: '/v1/miners/poll', access: ['miner'], body: () => ({}) },
  {
    method: 'POST',
    path: '/v1/miners/jobs/{job_id}/result',
    access: ['miner'],
    body: () => ({ result: { text: 'done' } }),
  },
  {
    method: 'POST',
    path: '/v1/miners/jobs/{job_id}/fail',
    access: ['miner'],
    body: () => ({ error: 'could not run' }),
  },
  {
    method: 'POST',
    path: '/v1/payments/{payment_id}/release',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({ reason: 'access table' }),
  },
  {
    method: 'POST',
    path: '/v1/payments/{payment_id}/refund',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({ reason: 'access table' }),
    fresh: { ok: 200 },
  },
  // Another client's payment in a batch is that item's 404; the request itself is answered.
  {
    method: 'POST',
    path: '/v1/payments/batch',
    access: ['client', 'admin'],
    body: (ids) => ({ items: [{ payment_id: ids.payment_id, action: 'refund' }] }),
  },
  {
    method: 'POST',
    path: '/v1/jobs/{job_id}/cancel',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({}),
    fresh: { ok: 200 },
  },
  {
    method: 'POST',
    path: '/v1/jobs/{job_id}/extend',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({ seconds: 60 }),
    fresh: { ok: 200 },
  },
  {
    method: 'POST',
    path: '/v1/webhook-endpoints',
    access: ['client', 'admin'],
    body: () => ({ url: WEBHOOK_URL }),
  },
  { method: 'GET', path: '/v1/webhook-endpoints', access: ['client', 'admin'] },
  { method: 'GET', path: '/v1/webhook-endpoints/{endpoint_id}', access: ['client', 'admin'], owned: true },
  {
    method: 'DELETE',
    path: '/v1/webhook-endpoints/{endpoint_id}',
    access: ['client', 'admin'],
    owned: true,
    freshEndpoint: { ok: 204 },
  },
  {
    method: 'POST',
    path: '/v1/webhook-endpoints/{endpoint_id}/rotate-secret',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({}),
  },
  { method: 'GET', path: '/v1/webhook-endpoints/{endpoint_id}/deliveries', access: ['client', 'admin'], owned: true },
  {
    method: 'POST',
    path: '/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry',
    access: ['client', 'admin'],
    owned: true,
    body: () => ({}),
  },
  // Admin only. Drain then resume `local` (one row after the other, after every row that
  // creates a paid job), so the app takes escrows again afterwards.
  { method: 'GET', path: '/v1/providers', access: ['admin'] },
  { method: 'POST', path: '/v1/providers/{provider_id}/drain', access: ['admin'], body: () => ({}) },
  { method: 'POST', path: '/v1/providers/{provider_id}/resume', access: ['admin'], body: () => ({}) },
  { method: 'GET', path: '/v1/receipts/keys', access: 'public' },
  { method: 'GET', path: '/health/live', access: 'public' },
  { method: 'GET', path: '/health/ready', access: 'public' },
  { method: 'GET', path: '/metrics', access: 'public' },
  { method: 'GET', path: '/docs-json', access: 'public' },
  { method: 'GET', path: '/docs', access: 'public' },
];

/** Never called: the table's app has no delivery worker (WEBHOOK_DELIVERY_ENABLED=false). */
const WEBHOOK_URL = 'http://127.0.0.1:9/hook';

/** Routes the app serves that are not its own API (Swagger UI and its document). */
const DOCS_ROUTES = new Set(['GET /docs-json', 'GET /docs']);

type Caller = 'none' | 'wrong' | 'owner' | 'other client' | 'miner' | 'admin';
const CALLERS: readonly Caller[] = ['none', 'wrong', 'owner', 'other client', 'miner', 'admin'];
const CALLER_KEY: Record<Exclude<Caller, 'none' | 'wrong'>, KeyName> = {
  owner: 'client',
  'other client': 'client2',
  miner: 'miner',
  admin: 'admin',
};
const CALLER_ROLE: Record<Exclude<Caller, 'none' | 'wrong'>, Role> = {
  owner: 'client',
  'other client': 'client',
  miner: 'miner',
  admin: 'admin',
};

type Expected = '2xx' | '401' | '403' | '404' | 'allowed';

/** What docs/roles.md promises for one caller on one route. */
function expected(route: RouteRow, caller: Caller): Expected {
  if (route.access === 'public') return '2xx';
  if (caller === 'none' || caller === 'wrong') return '401';
  if (!route.access.includes(CALLER_ROLE[caller])) return '403';
  if (caller === 'other client' && route.owned) return '404';
  if (caller === 'miner' && route.paidMiner) return '404';
  return 'allowed';
}

const routeKey = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

describe('access: every route × every caller', () => {
  const app = useTestApp({ WEBHOOK_ALLOW_PRIVATE_URLS: 'true', WEBHOOK_DELIVERY_ENABLED: 'false' });
  let api: JobsApi;
  let ids: Ids;

  /** A paid job of `client` (payer: the client's configured wallet), so payment routes have real ids. */
  async function paidJob(): Promise<Pick<Ids, 'job_id' | 'payment_id'>> {
    const job = await api.createJob('client', { payload: PAYLOAD, payment_amount: '0.001' });
    expect(job).toMatchObject({ payment_status: 'escrowed', payment_amount: '0.00100000' });
    return { job_id: job.job_id, payment_id: job.payment_id };
  }

  /** A webhook endpoint of `client`. */
  async function endpoint(): Promise<string> {
    return expectStatus(await api.post('client', '/v1/webhook-endpoints', { url: WEBHOOK_URL }), 201, 'endpoint')
      .endpoint_id as string;
  }

  beforeAll(async () => {
    api = new JobsApi(app());
    const endpointId = await endpoint();
    ids = { ...(await paidJob()), payout_address: await newAddress('BTC'), endpoint_id: endpointId, delivery_id: '' };
    const deliveries = expectStatus(
      await api.get('client', `/v1/webhook-endpoints/${endpointId}/deliveries`),
      200,
      'deliveries',
    );
    ids.delivery_id = deliveries.items[0].delivery_id as string;
  });

  function call(route: RouteRow, caller: Caller, ids: Ids): Promise<Response> {
    const path = route.path
      .replace('{job_id}', ids.job_id)
      .replace('{payment_id}', ids.payment_id)
      .replace('{endpoint_id}', ids.endpoint_id)
      .replace('{delivery_id}', ids.delivery_id)
      .replace('{provider_id}', 'local');
    const http = app().http;
    let request =
      route.method === 'GET' ? http.get(path) : route.method === 'DELETE' ? http.delete(path) : http.post(path);
    if (caller === 'wrong') request = request.set('X-Api-Key', 'not-a-configured-key-0000');
    else if (caller !== 'none') request = request.set('X-Api-Key', app().keys[CALLER_KEY[caller]]);
    if (route.method === 'POST')
      return request.set('Content-Type', 'application/json').send(JSON.stringify(route.body?.(ids) ?? {}));
    return request;
  }

  const cells = ROUTES.flatMap((route) =>
    CALLERS.map((caller) => [route.method, route.path, caller, expected(route, caller), route] as const),
  );

  it.each(cells)('%s %s as %s → %s', async (_method, _path, caller, expectation, route) => {
    const fresh = route.fresh ? await paidJob() : route.freshEndpoint ? { endpoint_id: await endpoint() } : {};
    const response = await call(route, caller, { ...ids, ...fresh });
    const seen = { status: response.status, code: response.body?.code };
    switch (expectation) {
      case '2xx':
        expect(seen.status).toBeGreaterThanOrEqual(200);
        expect(seen.status).toBeLessThan(300);
        return;
      case '401':
        expect(seen).toEqual({ status: 401, code: 'UNAUTHORIZED' });
        break;
      case '403':
        expect(seen).toEqual({ status: 403, code: 'FORBIDDEN' });
        break;
      case '404':
        expect(seen).toEqual({
          status: 404,
          code: expect.stringMatching(/^(JOB|PAYMENT|WEBHOOK_ENDPOINT)_NOT_FOUND$/),
        });
        break;
      case 'allowed':
        // Let through: the answer is the route's own (success or a business refusal), never
        // an access refusal, never a server error, and the owner and admin see the resource.
        expect([401, 403]).not.toContain(seen.status);
        expect(seen.status).toBeLessThan(500);
        if (route.owned || route.path.includes('{')) expect(seen.status).not.toBe(404);
        if (route.fresh) expect(seen.status).toBe(route.fresh.ok);
        if (route.freshEndpoint) expect(seen.status).toBe(route.freshEndpoint.ok);
        break;
    }
    if (response.status >= 400) expectErrorShape(response.body, response.status);
  });

  it('the owner and an admin really get 2xx on the read routes of the paid job', async () => {
    for (const who of ['client', 'admin'] as const) {
      expect(expectStatus(await api.get(who, `/v1/jobs/${ids.job_id}`), 200, 'job').job_id).toBe(ids.job_id);
      expect(expectStatus(await api.get(who, `/v1/jobs/${ids.job_id}/payment`), 200, 'job payment').payment_id).toBe(
        ids.payment_id,
      );
      expect(expectStatus(await api.get(who, `/v1/payments/${ids.payment_id}`), 200, 'payment').job_id).toBe(
        ids.job_id,
      );
      expect(
        expectStatus(await api.get(who, `/v1/payments/${ids.payment_id}/receipt`), 200, 'receipt').payment_id,
      ).toBe(ids.payment_id);
      expect(
        expectStatus(await api.get(who, `/v1/payments/${ids.payment_id}/events`), 200, 'events').items.length,
      ).toBeGreaterThan(0);
    }
  });

  it('the table covers every route of the OpenAPI document, and every API row is in it', async () => {
    const document = expectStatus(await app().http.get('/docs-json'), 200, 'GET /docs-json');
    const documented = new Set<string>();
    for (const [path, operations] of Object.entries(document.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(operations)) {
        if (['get', 'post', 'put', 'patch', 'delete', 'head', 'options'].includes(method))
          documented.add(routeKey(method, path));
      }
    }
    const table = new Set(ROUTES.map((r) => routeKey(r.method, r.path)));

    expect([...documented].filter((r) => !table.has(r))).toEqual([]);
    // /metrics is deliberately left out of the document; the docs routes serve it.
    const undocumented = [...table].filter((r) => !documented.has(r) && !DOCS_ROUTES.has(r));
    expect(undocumented).toEqual(['GET /metrics']);
  });

  it('the table covers every route the app registers, documented or not', () => {
    const registered = new Set(registeredRoutes(app().app).map((r) => routeKey(r.method, r.path)));
    const table = new Set(ROUTES.map((r) => routeKey(r.method, r.path)));

    expect(registered.size).toBeGreaterThan(0);
    expect([...registered].filter((r) => !table.has(r))).toEqual([]);
    expect([...table].filter((r) => !registered.has(r) && !DOCS_ROUTES.has(r))).toEqual([]);
  });

  it('a public route ignores a wrong key rather than refusing it', async () => {
    const response = await app().http.get('/v1/receipts/keys').set('X-Api-Key', 'not-a-configured-key-0000');
    expect(response.status).toBe(200);
    expect(response.body.keys[0]).toMatchObject({ alg: 'Ed25519' });
  });
});
