import fc from 'fast-check';
import { Client } from 'pg';
import { startTestApp, TestApp } from './support/app';

/**
 * Property: generated bad requests against every POST route never produce a 5xx and
 * never leave a row behind. Each body is a valid body with one field broken (so it is
 * bad by construction), or arbitrary JSON, or a bad header; 10,000 in all.
 */
const TABLES = ['job', 'miner', 'job_payments', 'payment_escrows', 'payment_events', 'idempotency_keys'];
const RUNS_PER_ROUTE = 1000;

let t: TestApp;
let db: Client;
let ids: { jobId: string; paymentId: string };

/** Fastify's own inject: an in-memory HTTP request through the full request pipeline. */
const fastify = () => t.app.getHttpAdapter().getInstance();

/**
 * Rows per table. Idempotency keys that stored a business refusal (404/409 for an id
 * that does not exist or a job in the wrong state) are left out: SPEC requires that
 * first answer to be replayed, so it is the one row such a request must leave.
 */
async function rowCounts(): Promise<Record<string, string>> {
  const counts: Record<string, string> = {};
  for (const table of TABLES) {
    const where = table === 'idempotency_keys' ? ' WHERE status_code IS NULL OR status_code NOT IN (404, 409)' : '';
    counts[table] = (await db.query(`SELECT count(*) AS n FROM ${table}${where}`)).rows[0].n;
  }
  return counts;
}

const badAmount = fc.oneof(
  fc.constantFrom('1e-3', '0x10', 'NaN', 'Infinity', '-1', '0', '0.000000001', '+1', ' 1', '01', '.5', '5.', '', '1000000', '0.00000001'),
  fc.constantFrom(0, -1, 1e-7, 1e21, 1000000, true, null, [], {}),
  fc.string({ maxLength: 30 }).filter((s) => !/^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$/.test(s)),
);
const badAddress = fc.oneof(
  fc.constantFrom('bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt081', 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdv8f3t4', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', '', 'x'.repeat(101)),
  fc.string({ maxLength: 60 }),
  fc.integer(),
);
const junk = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }));

/** A valid body with exactly one thing made invalid. */
function brokenBody(valid: Record<string, unknown>, fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const broken = Object.entries(fields).map(([field, bad]) => bad.map((value) => ({ ...valid, [field]: value })));
  const unknownField = fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !(k in valid) && !k.startsWith('__')).map((k) => ({ ...valid, [k]: 1 }));
  return fc.oneof(...broken, unknownField, fc.anything().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)));
}

describe('fuzzed POST routes', () => {
  beforeAll(async () => {
    t = await startTestApp();
    db = new Client({ connectionString: t.databaseUrl });
    await db.connect();
    // One real paid job, so routes that take ids have something to aim at.
    const created = await t.http.post('/v1/jobs').set('X-Api-Key', t.keys.client).send({ payload: { p: 1 }, payment_amount: '0.001' });
    expect(created.status).toBe(201);
    ids = { jobId: created.body.job_id, paymentId: created.body.payment_id };
  });

  afterAll(async () => {
    await db?.end();
    await t?.close();
  });

  const validJob = { payload: { job_type: 'ai_inference' }, ttl_seconds: 60, payment_amount: '0.001', payment_currency: 'BTC' };
  const routes: { name: string; key: 'client' | 'miner' | 'admin'; path: () => string; bodies: () => fc.Arbitrary<unknown> }[] = [
    {
      name: 'POST /v1/jobs',
      key: 'client',
      path: () => '/v1/jobs',
      bodies: () =>
        brokenBody(validJob, {
          payload: junk,
          ttl_seconds: fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 10_000_000 }), fc.string()),
          payment_amount: badAmount,
          payment_currency: fc.oneof(fc.constantFrom('DOGE', 'btc', ''), fc.integer()),
          payer_address: badAddress,
          refund_address: badAddress,
          // Finite non-integers only: JSON turns ±Infinity and NaN into null, which means "not given".
          escrow_timeout_seconds: fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 100_000_000 }), fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x))),
          constraints: fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer())),
        }),
    },
    {
      name: 'POST /v1/payments',
      key: 'client',
      path: () => '/v1/payments',
      bodies: () => brokenBody({ job_id: ids.jobId, amount: '0.001' }, { job_id: fc.oneof(fc.string(), fc.uuid(), fc.integer()), amount: badAmount, currency: fc.constantFrom('XYZ', ''), payer_address: badAddress }),
    },
    {
      name: 'POST /v1/payments/:id/release',
      key: 'client',
      path: () => `/v1/payments/${ids.paymentId}/release`,
      bodies: () => brokenBody({ job_id: ids.jobId, reason: 'done' }, { job_id: fc.oneof(fc.integer(), fc.string({ minLength: 101, maxLength: 120 })), reason: fc.oneof(fc.integer(), fc.string({ minLength: 501, maxLength: 600 })) }),
    },
    {
      name: 'POST /v1/payments/:id/refund',
      key: 'admin',
      path: () => `/v1/payments/${ids.paymentId}/refund`,
      bodies: () => brokenBody({ reason: 'no' }, { job_id: fc.oneof(fc.integer(), fc.boolean()), reason: fc.oneof(fc.integer(), fc.array(fc.string())) }),
    },
    {
      name: 'POST /v1/miners/register',
      key: 'miner',
      path: () => '/v1/miners/register',
      bodies: () => brokenBody({ payout_address: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' }, { payout_address: badAddress }),
    },
    {
      name: 'POST /v1/miners/jobs/:id/result',
      key: 'miner',
      path: () => `/v1/miners/jobs/${ids.jobId}/result`,
      bodies: () => brokenBody({ result: { ok: true } }, { metrics: fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer())) }),
    },
    {
      name: 'POST /v1/miners/jobs/:id/fail',
      key: 'miner',
      path: () => `/v1/miners/jobs/${ids.jobId}/fail`,
      bodies: () => brokenBody({ error: 'boom' }, { error: fc.oneof(fc.constant(''), fc.integer(), fc.string({ minLength: 2001, maxLength: 2100 })) }),
    },
    {
      name: 'POST /v1/jobs/:id/cancel (ids that do not exist)',
      key: 'client',
      path: () => `/v1/jobs/${encodeURIComponent(crypto.randomUUID())}/cancel`,
      bodies: () => fc.constant(undefined),
    },
  ];

  it.each(routes)('$name: bad bodies → 4xx, never 5xx, no row written', async (route) => {
    const before = await rowCounts();
    await fc.assert(
      fc.asyncProperty(route.bodies(), fc.option(fc.stringMatching(/^[\x21-\x7e]{1,300}$/), { nil: undefined }), async (body, idempotencyKey) => {
        const headers: Record<string, string> = { 'x-api-key': t.keys[route.key], 'content-type': 'application/json' };
        if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
        const response = await fastify().inject({ method: 'POST', url: route.path(), headers, payload: body === undefined ? undefined : JSON.stringify(body) });
        expect(response.statusCode).toBeGreaterThanOrEqual(400);
        expect(response.statusCode).toBeLessThan(500);
        const error = response.json();
        expect(Object.keys(error).sort()).toEqual(['code', 'details', 'message', 'request_id', 'status_code']);
      }),
      { numRuns: RUNS_PER_ROUTE },
    );
    expect(await rowCounts()).toEqual(before);
  });

  it('bad headers on every POST route: wrong content type, oversized body, missing or wrong key → 4xx, no rows', async () => {
    const before = await rowCounts();
    const contentTypes = fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), contentTypes, fc.constantFrom('none', 'wrong', 'ok'), async (route, contentType, keyKind) => {
        const headers: Record<string, string> = { 'content-type': contentType };
        if (keyKind === 'wrong') headers['x-api-key'] = 'not-a-key-at-all';
        if (keyKind === 'ok') headers['x-api-key'] = t.keys[route.key];
        const response = await fastify().inject({ method: 'POST', url: route.path(), headers, payload: 'payload=1' });
        expect([401, 415]).toContain(response.statusCode);
      }),
      { numRuns: 1000 },
    );
    const huge = await fastify().inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { 'x-api-key': t.keys.client, 'content-type': 'application/json' },
      payload: JSON.stringify({ payload: { blob: 'x'.repeat(300 * 1024) } }),
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().code).toBe('PAYLOAD_TOO_LARGE');
    expect(await rowCounts()).toEqual(before);
  });
});
