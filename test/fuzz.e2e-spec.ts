import fc from 'fast-check';
import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { BODY_LIMIT_BYTES } from '../src/app.setup';
import type { AppConfig } from '../src/config/app-config';
import { APP_CONFIG } from '../src/config/config.module';
import { SETTLEMENT_ROUTES } from '../src/wallet-daemon/requests';
import { spawnWalletDaemon } from '../src/wallet-daemon/spawn';
import { startTestApp, TestApp } from './support/app';
import { DAEMON_LOG_FILE, TEST_WALLET_SEED } from './support/daemon';
import { createDatabase, requiredTestEnv, TEST_ENV, withClient, withDatabaseName } from './support/postgres';
import { registeredRoutes } from './support/routes';

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
 * that does not exist or a job in the wrong state) are left out: the contract requires that
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
  fc.constantFrom(
    '1e-3',
    '0x10',
    'NaN',
    'Infinity',
    '-1',
    '0',
    '0.000000001',
    '+1',
    ' 1',
    '01',
    '.5',
    '5.',
    '',
    '1000000',
    '0.00000001',
  ),
  fc.constantFrom(0, -1, 1e-7, 1e21, 1000000, true, null, [], {}),
  fc.string({ maxLength: 30 }).filter((s) => !/^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$/.test(s)),
);
const badAddress = fc.oneof(
  fc.constantFrom(
    'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt081',
    'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdv8f3t4',
    '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa',
    '',
    'x'.repeat(101),
  ),
  fc.string({ maxLength: 60 }),
  fc.integer(),
);
const junk = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
);

/** A valid body with exactly one thing made invalid. */
function brokenBody(
  valid: Record<string, unknown>,
  fields: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<unknown> {
  const broken = Object.entries(fields).map(([field, bad]) => bad.map((value) => ({ ...valid, [field]: value })));
  const unknownField = fc
    .string({ minLength: 1, maxLength: 12 })
    .filter((k) => !(k in valid) && !k.startsWith('__'))
    .map((k) => ({ ...valid, [k]: 1 }));
  return fc.oneof(
    ...broken,
    unknownField,
    fc.anything().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)),
  );
}

describe('fuzzed POST routes', () => {
  beforeAll(async () => {
    t = await startTestApp();
    db = new Client({ connectionString: t.databaseUrl });
    await db.connect();
    // One real paid job, so routes that take ids have something to aim at.
    const created = await t.http
      .post('/v1/jobs')
      .set('X-Api-Key', t.keys.client)
      .send({ payload: { p: 1 }, payment_amount: '0.001' });
    expect(created.status).toBe(201);
    ids = { jobId: created.body.job_id, paymentId: created.body.payment_id };
  });

  afterAll(async () => {
    await db?.end();
    await t?.close();
  });

  const validJob = {
    payload: { job_type: 'ai_inference' },
    ttl_seconds: 60,
    payment_amount: '0.001',
    payment_currency: 'BTC',
  };
  const routes: {
    name: string;
    key: 'client' | 'miner' | 'admin';
    path: () => string;
    bodies: () => fc.Arbitrary<unknown>;
  }[] = [
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
          escrow_timeout_seconds: fc.oneof(
            fc.integer({ max: 0 }),
            fc.integer({ min: 100_000_000 }),
            fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x)),
          ),
          constraints: fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer())),
        }),
    },
    {
      name: 'POST /v1/payments',
      key: 'client',
      path: () => '/v1/payments',
      bodies: () =>
        brokenBody(
          { job_id: ids.jobId, amount: '0.001' },
          {
            job_id: fc.oneof(fc.string(), fc.uuid(), fc.integer()),
            amount: badAmount,
            currency: fc.constantFrom('XYZ', ''),
            payer_address: badAddress,
          },
        ),
    },
    {
      name: 'POST /v1/payments/:id/release',
      key: 'client',
      path: () => `/v1/payments/${ids.paymentId}/release`,
      bodies: () =>
        brokenBody(
          { job_id: ids.jobId, reason: 'done' },
          {
            job_id: fc.oneof(fc.integer(), fc.string({ minLength: 101, maxLength: 120 })),
            reason: fc.oneof(fc.integer(), fc.string({ minLength: 501, maxLength: 600 })),
          },
        ),
    },
    {
      name: 'POST /v1/payments/:id/refund',
      key: 'admin',
      path: () => `/v1/payments/${ids.paymentId}/refund`,
      bodies: () =>
        brokenBody(
          { reason: 'no' },
          { job_id: fc.oneof(fc.integer(), fc.boolean()), reason: fc.oneof(fc.integer(), fc.array(fc.string())) },
        ),
    },
    {
      name: 'POST /v1/miners/register',
      key: 'miner',
      path: () => '/v1/miners/register',
      bodies: () =>
        brokenBody({ payout_address: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' }, { payout_address: badAddress }),
    },
    {
      name: 'POST /v1/miners/jobs/:id/result',
      key: 'miner',
      path: () => `/v1/miners/jobs/${ids.jobId}/result`,
      bodies: () =>
        brokenBody({ result: { ok: true } }, { metrics: fc.oneof(fc.string(), fc.integer(), fc.array(fc.integer())) }),
    },
    {
      name: 'POST /v1/miners/jobs/:id/fail',
      key: 'miner',
      path: () => `/v1/miners/jobs/${ids.jobId}/fail`,
      bodies: () =>
        brokenBody(
          { error: 'boom' },
          { error: fc.oneof(fc.constant(''), fc.integer(), fc.string({ minLength: 2001, maxLength: 2100 })) },
        ),
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
      fc.asyncProperty(
        route.bodies(),
        fc.option(fc.stringMatching(/^[\x21-\x7e]{1,300}$/), { nil: undefined }),
        async (body, idempotencyKey) => {
          const headers: Record<string, string> = {
            'x-api-key': t.keys[route.key],
            'content-type': 'application/json',
          };
          if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
          const response = await fastify().inject({
            method: 'POST',
            url: route.path(),
            headers,
            payload: body === undefined ? undefined : JSON.stringify(body),
          });
          expect(response.statusCode).toBeGreaterThanOrEqual(400);
          expect(response.statusCode).toBeLessThan(500);
          const error = response.json();
          expect(Object.keys(error).sort()).toEqual(['code', 'details', 'message', 'request_id', 'status_code']);
        },
      ),
      { numRuns: RUNS_PER_ROUTE },
    );
    expect(await rowCounts()).toEqual(before);
  });

  it('bad headers on every POST route: wrong content type, oversized body, missing or wrong key → 4xx, no rows', async () => {
    const before = await rowCounts();
    const contentTypes = fc.constantFrom(
      'text/plain',
      'application/xml',
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes),
        contentTypes,
        fc.constantFrom('none', 'wrong', 'ok'),
        async (route, contentType, keyKind) => {
          const headers: Record<string, string> = { 'content-type': contentType };
          if (keyKind === 'wrong') headers['x-api-key'] = 'not-a-key-at-all';
          if (keyKind === 'ok') headers['x-api-key'] = t.keys[route.key];
          const response = await fastify().inject({ method: 'POST', url: route.path(), headers, payload: 'payload=1' });
          expect([401, 415]).toContain(response.statusCode);
        },
      ),
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

// ---------------------------------------------------------------------------------------
// Structural attacks: bodies whose shape, not their values, is the weapon — nested to
// 10,000 levels, very wide, very long, keys repeated thousands of times. The raw body's
// depth and entry count are checked before it is parsed (BODY_MAX_DEPTH,
// BODY_MAX_ENTRIES; the daemon's WALLET_BODY_MAX_*), so nothing recursive after parsing
// ever sees them. Bodies are built as text: the attack is the text, whatever a
// serializer would make of it.
// ---------------------------------------------------------------------------------------

/** A value of `levels` nested objects (`{"a":{"a":…1…}}`) or arrays (`[[…]]`). */
const deepObject = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
const deepArray = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;
/** Objects and arrays alternating, `levels` in all. */
const deepMixed = (levels: number) => `${'[{"a":'.repeat(levels / 2)}1${'}]'.repeat(levels / 2)}`;
const wideObject = (entries: number) => `{${Array.from({ length: entries }, (_, i) => `"k${i}":0`).join(',')}}`;
const wideArray = (entries: number) => `[${'0,'.repeat(entries - 1)}0]`;
const duplicateKeys = (key: string, entries: number) =>
  `{${`${JSON.stringify(key)}:0,`.repeat(entries - 1)}${JSON.stringify(key)}:0}`;
const longString = (bytes: number) => JSON.stringify('x'.repeat(bytes));

/** No field of any route is called this: an unknown field. */
const UNKNOWN_FIELD = 'zz_not_a_field';

interface Attack {
  name: string;
  body: string;
}

/** `value` as one field of an otherwise empty body. */
const inField = (field: string, value: string) => `{${JSON.stringify(field)}:${value}}`;

/** Bodies over the depth or entry limit, within the byte limit; each must be refused at parse time. */
function overLimitAttacks(
  fields: string[],
  limits: { maxDepth: number; maxEntries: number },
  bodyLimit: number,
): Attack[] {
  const attacks: Attack[] = [];
  // One level past the limit, then the depths that overflowed the stack (from about 1,000).
  const depths = [limits.maxDepth, 1000, 2000, 10_000];
  for (const levels of depths) {
    attacks.push({ name: `body: ${levels + 1} nested objects`, body: deepObject(levels + 1) });
    attacks.push({ name: `body: ${levels + 1} nested arrays`, body: deepArray(levels + 1) });
    for (const field of [...fields, UNKNOWN_FIELD]) {
      attacks.push({ name: `${field}: ${levels} nested objects`, body: inField(field, deepObject(levels)) });
      attacks.push({ name: `${field}: ${levels} nested arrays`, body: inField(field, deepArray(levels)) });
      attacks.push({ name: `${field}: ${levels} objects and arrays`, body: inField(field, deepMixed(levels)) });
    }
  }
  const over = limits.maxEntries + 1;
  // As many array elements as the byte limit allows, far past the entry limit.
  const widest = Math.floor((bodyLimit - 100) / 2);
  attacks.push({ name: `body: ${over} distinct keys`, body: wideObject(over) });
  attacks.push({ name: `body: one key ${over} times`, body: duplicateKeys(fields[0] ?? UNKNOWN_FIELD, over) });
  for (const field of [...fields, UNKNOWN_FIELD]) {
    attacks.push({ name: `${field}: object of ${over} keys`, body: inField(field, wideObject(over)) });
    attacks.push({ name: `${field}: array of ${widest} elements`, body: inField(field, wideArray(widest)) });
    attacks.push({ name: `${field}: one key ${over} times`, body: inField(field, duplicateKeys('a', over)) });
  }
  for (const attack of attacks) {
    if (Buffer.byteLength(attack.body) >= bodyLimit)
      throw new Error(`${attack.name} is ${Buffer.byteLength(attack.body)} bytes, not within the body limit`);
  }
  return attacks;
}

/**
 * Bodies within every limit but as wide, long and deep as they allow, each with at most
 * the attacked fields (so never a valid request that would write): they reach
 * transformation and validation, which must refuse them without a 5xx.
 */
function withinLimitAttacks(
  fields: string[],
  limits: { maxDepth: number; maxEntries: number },
  bodyLimit: number,
): Attack[] {
  const attacks: Attack[] = [];
  // The field's own level and the body's take two of the entries and levels.
  const entries = limits.maxEntries - 2;
  const levels = limits.maxDepth - 1;
  const long = bodyLimit - 1000;
  // As many repeats as the limits allow: entries, and bytes for long field names.
  const repeats = (field: string) =>
    Math.min(limits.maxEntries, Math.floor((bodyLimit - 100) / (JSON.stringify(field).length + 3)));
  attacks.push({ name: `body: ${limits.maxEntries} distinct keys`, body: wideObject(limits.maxEntries) });
  for (const field of [...fields, UNKNOWN_FIELD]) {
    attacks.push({ name: `${field}: string of ${long} bytes`, body: inField(field, longString(long)) });
    attacks.push({ name: `${field}: ${levels} nested objects`, body: inField(field, deepObject(levels)) });
    attacks.push({ name: `${field}: ${levels} nested arrays`, body: inField(field, deepArray(levels)) });
    attacks.push({ name: `${field}: object of ${entries} keys`, body: inField(field, wideObject(entries)) });
    attacks.push({ name: `${field}: array of ${entries} elements`, body: inField(field, wideArray(entries)) });
    attacks.push({
      name: `${field}: one key ${repeats(field)} times at the top`,
      body: duplicateKeys(field, repeats(field)),
    });
  }
  for (const attack of attacks) {
    if (Buffer.byteLength(attack.body) >= bodyLimit)
      throw new Error(`${attack.name} is ${Buffer.byteLength(attack.body)} bytes, not within the body limit`);
  }
  return attacks;
}

/**
 * Rows in every table of `schema`, so a table added later is counted too; `where`
 * leaves out the rows a request may rightly leave in a table (see `rowCounts`).
 */
async function everyTableCount(
  client: Client,
  schema: string,
  where: Record<string, string> = {},
): Promise<Record<string, string>> {
  const { rows: tables } = await client.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1`,
    [schema],
  );
  const counts: Record<string, string> = {};
  for (const { name } of tables) {
    const filter = where[name] ? ` WHERE ${where[name]}` : '';
    counts[name] = (await client.query(`SELECT count(*) AS n FROM "${schema}"."${name}"${filter}`)).rows[0].n;
  }
  return counts;
}

/**
 * Answers stored under their Idempotency-Key, to be replayed: a business refusal (404/409)
 * and a poll's "nothing to hand out" (204) are the one row such a request leaves.
 */
const REPLAYABLE_REFUSALS = { idempotency_keys: 'status_code IS NULL OR status_code NOT IN (204, 404, 409)' };

const statusClass = (status: number) => `${Math.floor(status / 100)}xx`;

describe('structural attacks on every POST route of the coordinator', () => {
  let app: TestApp;
  let client: Client;
  let paid: { job_id: string; payment_id: string };
  let limits: { maxDepth: number; maxEntries: number };
  let posts: { path: string; key?: string; fields: string[] }[];

  const inject = (path: string, key: string | undefined, body: string) =>
    app.app
      .getHttpAdapter()
      .getInstance()
      .inject({
        method: 'POST',
        url: path,
        headers: {
          'content-type': 'application/json',
          'idempotency-key': `structural-${randomUUID()}`,
          ...(key ? { 'x-api-key': key } : {}),
        },
        payload: body,
      });

  /** The job and payment the attacks aim at, as a client sees them. */
  async function paidState(): Promise<unknown> {
    const job = await app.http.get(`/v1/jobs/${paid.job_id}`).set('X-Api-Key', app.keys.client);
    const payment = await app.http.get(`/v1/payments/${paid.payment_id}`).set('X-Api-Key', app.keys.client);
    return { job: job.body, payment: payment.body };
  }

  beforeAll(async () => {
    app = await startTestApp();
    client = new Client({ connectionString: app.databaseUrl });
    await client.connect();
    const created = await app.http
      .post('/v1/jobs')
      .set('X-Api-Key', app.keys.client)
      .send({ payload: { p: 1 }, payment_amount: '0.001' });
    expect(created.status).toBe(201);
    paid = { job_id: created.body.job_id, payment_id: created.body.payment_id };
    const config = app.app.get<AppConfig>(APP_CONFIG);
    limits = { maxDepth: config.bodyMaxDepth, maxEntries: config.bodyMaxEntries };
    // Every POST route the app registers, with the fields its documented body has.
    const document = (await app.http.get('/docs-json')).body as {
      paths: Record<string, { post?: { requestBody?: { content: Record<string, { schema: { $ref?: string } }> } } }>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    const keyOfRole = { client: app.keys.client, miner: app.keys.miner, admin: app.keys.admin };
    posts = registeredRoutes(app.app)
      .filter((route) => route.method === 'POST')
      .map((route) => {
        const ref = document.paths[route.path]?.post?.requestBody?.content['application/json']?.schema.$ref;
        const schema = ref ? document.components.schemas[ref.replace('#/components/schemas/', '')] : undefined;
        return {
          path: route.path,
          key: route.roles[0] && keyOfRole[route.roles[0]],
          fields: Object.keys(schema?.properties ?? {}),
        };
      });
  });

  afterAll(async () => {
    await client?.end();
    await app?.close();
  });

  it('finds the POST routes and the fields of their bodies', () => {
    const byPath = Object.fromEntries(posts.map((p) => [p.path, p.fields]));
    expect(byPath['/v1/jobs']).toEqual(expect.arrayContaining(['payload', 'constraints', 'payment_amount']));
    expect(byPath['/v1/payments/{payment_id}/release']).toEqual(expect.arrayContaining(['reason', 'job_id']));
    expect(posts.length).toBeGreaterThanOrEqual(9);
    expect(posts.every((p) => p.key !== undefined)).toBe(true);
  });

  it('nested to 10,000 levels or past the entry limit: 400 at parse time on every POST route, no row, nothing changed', async () => {
    const before = await everyTableCount(client, 'public');
    const state = await paidState();
    let sent = 0;
    for (const route of posts) {
      const path = route.path.replace('{job_id}', paid.job_id).replace('{payment_id}', paid.payment_id);
      for (const attack of overLimitAttacks(route.fields, limits, BODY_LIMIT_BYTES)) {
        const response = await inject(path, route.key, attack.body);
        const seen = {
          route: route.path,
          attack: attack.name,
          status: response.statusCode,
          code: response.json().code,
          fields: Object.keys(response.json().details?.fields ?? {}),
        };
        expect(seen).toEqual({
          route: route.path,
          attack: attack.name,
          status: 400,
          code: 'VALIDATION_FAILED',
          fields: ['body'],
        });
        sent++;
      }
    }
    expect(sent).toBeGreaterThan(posts.length * 50);
    expect(await everyTableCount(client, 'public')).toEqual(before);
    expect(await paidState()).toEqual(state);
  });

  it('within the limits but as wide, long and deep as allowed: 4xx on every POST route, never 5xx, no row, nothing changed', async () => {
    const before = await everyTableCount(client, 'public', REPLAYABLE_REFUSALS);
    const state = await paidState();
    for (const route of posts) {
      // Ids that exist nowhere: a body that passes validation can do nothing.
      const path = route.path.replace(/\{[a-z_]+\}/g, () => randomUUID());
      for (const attack of withinLimitAttacks(route.fields, limits, BODY_LIMIT_BYTES)) {
        const response = await inject(path, route.key, attack.body);
        // /v1/miners/poll takes no body: a miner without a payout address has no paid job to claim (204).
        const expected = route.path === '/v1/miners/poll' ? '2xx' : '4xx';
        expect({ route: route.path, attack: attack.name, answer: statusClass(response.statusCode) }).toEqual({
          route: route.path,
          attack: attack.name,
          answer: expected,
        });
      }
    }
    expect(await everyTableCount(client, 'public', REPLAYABLE_REFUSALS)).toEqual(before);
    expect(await paidState()).toEqual(state);
  });

  it('still refuses prototype-flavoured keys, at the top or nested, with 400 and no row', async () => {
    const before = await everyTableCount(client, 'public');
    const bodies = [
      '{"__proto__":{"role":"admin"},"payload":{"p":1}}',
      '{"constructor":{"prototype":{"role":"admin"}},"payload":{"p":1}}',
      '{"prototype":1,"payload":{"p":1}}',
      '{"payload":{"a":[{"__proto__":{"x":1}}]}}',
      '{"payload":{"p":1},"constraints":{"constructor":{"prototype":{"x":1}}}}',
    ];
    for (const body of bodies) {
      const response = await inject('/v1/jobs', app.keys.client, body);
      expect({ body, status: response.statusCode, code: response.json().code }).toEqual({
        body,
        status: 400,
        code: 'VALIDATION_FAILED',
      });
    }
    expect(await everyTableCount(client, 'public')).toEqual(before);
  });

  it('is still healthy afterwards: ready, and a normal request works', async () => {
    expect((await app.http.get('/health/ready')).status).toBe(200);
    const created = await app.http
      .post('/v1/jobs')
      .set('X-Api-Key', app.keys.client)
      .send({ payload: { after: 'attacks' }, constraints: { depth: { ok: [1, 2] } } });
    expect(created.status).toBe(201);
  });
});

describe('structural attacks on every POST route of the wallet daemon', () => {
  /** The daemon's POST routes and the fields each reads (src/wallet-daemon/requests.ts). */
  const DAEMON_POSTS: Record<string, string[]> = {
    '/api/v1/escrow/create': ['payment_id', 'amount', 'currency', 'payer', 'timeout_seconds'],
    [SETTLEMENT_ROUTES.release]: ['escrow_id', 'payee', 'address', 'amount', 'reason'],
    [SETTLEMENT_ROUTES.refund]: ['escrow_id', 'refund_address', 'address', 'amount', 'reason'],
    '/api/v1/escrow/settle-batch': ['items'],
    '/api/v1/escrow/create-batch': ['items'],
    '/api/v1/addresses': ['currency'],
    '/api/v1/faucet': ['currency', 'address', 'amount'],
    '/api/v1/faults': ['fail_rate', 'latency_ms', 'drop_rate'],
  };
  /** Fastify's default body limit, which the daemon keeps. */
  const DAEMON_BODY_LIMIT = 1024 * 1024;
  /** The daemon's defaults (src/wallet-daemon/config.ts), which this daemon runs with. */
  const DAEMON_LIMITS = { maxDepth: 16, maxEntries: 20_000 };

  let daemon: { url: string; token: string; stop(): Promise<void> };
  let client: Client;

  const post = (path: string, body: string) =>
    fetch(`${daemon.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${daemon.token}`,
        'content-type': 'application/json',
        'idempotency-key': `structural-${randomUUID()}`,
      },
      body,
    });
  const faults = async () =>
    (await fetch(`${daemon.url}/api/v1/faults`, { headers: { authorization: `Bearer ${daemon.token}` } })).json();

  beforeAll(async () => {
    // A daemon of this file alone, on a database whose rows the test counts.
    const adminUrl = requiredTestEnv(TEST_ENV.adminUrl);
    const name = `${requiredTestEnv(TEST_ENV.dbPrefix)}_d_${process.pid}_fuzz_${randomBytes(3).toString('hex')}`;
    await withClient(adminUrl, (admin) => createDatabase(admin, name));
    const databaseUrl = withDatabaseName(adminUrl, name);
    const token = randomBytes(16).toString('hex');
    const spawned = await spawnWalletDaemon({
      databaseUrl,
      token,
      port: 0,
      seed: TEST_WALLET_SEED,
      env: { LOG_LEVEL: 'error', WALLET_BODY_MAX_DEPTH: '', WALLET_BODY_MAX_ENTRIES: '' },
      logFile: DAEMON_LOG_FILE,
    });
    daemon = { url: spawned.url, token, stop: () => spawned.stop() };
    client = new Client({ connectionString: databaseUrl });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await daemon?.stop();
  });

  it('nested to 10,000 levels or past the entry limit: 400 at parse time on every POST route, no row, nothing changed', async () => {
    const before = await everyTableCount(client, 'wallet_daemon');
    const settings = await faults();
    let sent = 0;
    for (const [path, fields] of Object.entries(DAEMON_POSTS)) {
      const attacks = overLimitAttacks(fields, DAEMON_LIMITS, DAEMON_BODY_LIMIT);
      // Inside a batch item, where each item's body is read on its own.
      if (path.endsWith('-batch')) {
        for (const levels of [DAEMON_LIMITS.maxDepth, 10_000]) {
          attacks.push({
            name: `items[0].reason: ${levels} nested objects`,
            body: `{"items":[{"action":"release","idempotency_key":"k","reason":${deepObject(levels)}}]}`,
          });
        }
      }
      for (const attack of attacks) {
        const response = await post(path, attack.body);
        const seen = {
          path,
          attack: attack.name,
          status: response.status,
          code: ((await response.json()) as { code: string }).code,
        };
        expect(seen).toEqual({ path, attack: attack.name, status: 400, code: 'INVALID_REQUEST' });
        sent++;
      }
    }
    expect(sent).toBeGreaterThan(Object.keys(DAEMON_POSTS).length * 50);
    expect(await everyTableCount(client, 'wallet_daemon')).toEqual(before);
    expect(await faults()).toEqual(settings);
  });

  it('within the limits but as wide, long and deep as allowed: never 5xx, no row, nothing changed', async () => {
    const before = await everyTableCount(client, 'wallet_daemon');
    const settings = await faults();
    for (const [path, fields] of Object.entries(DAEMON_POSTS)) {
      for (const attack of withinLimitAttacks(fields, DAEMON_LIMITS, DAEMON_BODY_LIMIT)) {
        const response = await post(path, attack.body);
        await response.arrayBuffer();
        // The faults route ignores unknown fields and takes a repeated `"fail_rate":0` as
        // fail_rate 0, as it is: 200 and nothing changed. Every other body is a bad request.
        const expected = path === '/api/v1/faults' ? expect.stringMatching(/^[24]xx$/) : '4xx';
        expect({ path, attack: attack.name, answer: statusClass(response.status) }).toEqual({
          path,
          attack: attack.name,
          answer: expected,
        });
      }
    }
    expect(await everyTableCount(client, 'wallet_daemon')).toEqual(before);
    expect(await faults()).toEqual(settings);
  });

  it('still refuses a __proto__ key, nested or not, with 400 and no row', async () => {
    const before = await everyTableCount(client, 'wallet_daemon');
    for (const body of ['{"__proto__":{"x":1},"currency":"BTC"}', '{"currency":"BTC","zz":[{"__proto__":{"x":1}}]}']) {
      const response = await post('/api/v1/addresses', body);
      expect({ body, status: response.status, code: ((await response.json()) as { code: string }).code }).toEqual({
        body,
        status: 400,
        code: 'INVALID_REQUEST',
      });
    }
    expect(await everyTableCount(client, 'wallet_daemon')).toEqual(before);
  });

  it('is still healthy afterwards: /health, and a normal request works', async () => {
    expect((await fetch(`${daemon.url}/health`)).status).toBe(200);
    const response = await post('/api/v1/addresses', JSON.stringify({ currency: 'BTC' }));
    expect(response.status).toBe(201);
  });
});
