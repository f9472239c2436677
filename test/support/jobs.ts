import type { Response } from 'supertest';
import { KeyName, startTestApp, TestApp } from './app';
import { withClient } from './postgres';

/**
 * Small steps the jobs and access e2e specs share: one app per describe block, thin
 * HTTP calls that return the raw response (specs assert statuses themselves), and the
 * checks every error body and JobView must pass.
 */

// Response bodies are checked field by field in the specs.
export type Body = any;

/** What the miner runs in these specs (the seed's example). */
export const PAYLOAD = { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } };

/** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` writes it. */
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Fields every `JobView` carries (the OpenAPI `JobView` schema). */
export const JOB_VIEW_FIELDS = [
  'job_id',
  'client_id',
  'state',
  'payload',
  'constraints',
  'ttl_seconds',
  'requested_at',
  'expires_at',
  'assigned_miner_id',
  'result',
  'error',
  'payment_id',
  'payment_status',
  'payment_amount',
  'payment_currency',
  'completed_at',
] as const;

/**
 * A test app (its own fresh database) for the enclosing describe block, so jobs one
 * block leaves queued never reach another block's miners. Env given here is undone
 * afterwards, so the next block's app does not inherit it.
 */
export function useTestApp(env: Record<string, string> = {}): () => TestApp {
  let t: TestApp | undefined;
  beforeAll(async () => {
    const saved = { ...process.env };
    try {
      t = await startTestApp(env);
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });
  afterAll(async () => {
    await t?.close();
  });
  return () => {
    if (!t) throw new Error('the test app did not start (see beforeAll)');
    return t;
  };
}

/** Raw HTTP calls as one of the configured callers; nothing is asserted here. */
export class JobsApi {
  constructor(readonly t: TestApp) {}

  post(
    who: KeyName,
    path: string,
    body: object | string = {},
    headers: Record<string, string> = {},
  ): Promise<Response> {
    let call = this.t.http.post(path).set('X-Api-Key', this.t.keys[who]).set('Content-Type', 'application/json');
    for (const [name, value] of Object.entries(headers)) call = call.set(name, value);
    return call.send(typeof body === 'string' ? body : JSON.stringify(body));
  }

  get(who: KeyName, path: string): Promise<Response> {
    return this.t.http.get(path).set('X-Api-Key', this.t.keys[who]);
  }

  createJobRaw(who: KeyName, body: object | string, headers: Record<string, string> = {}): Promise<Response> {
    return this.post(who, '/v1/jobs', body, headers);
  }

  /** POST /v1/jobs; expects 201 and returns the JobView. */
  async createJob(who: KeyName = 'client', body: object = { payload: PAYLOAD }): Promise<Body> {
    return expectStatus(await this.createJobRaw(who, body), 201, `POST /v1/jobs as ${who}`);
  }

  job(who: KeyName, jobId: string): Promise<Response> {
    return this.get(who, `/v1/jobs/${jobId}`);
  }

  /** GET /v1/jobs/:id; expects 200 and returns the JobView. */
  async jobView(who: KeyName, jobId: string): Promise<Body> {
    return expectStatus(await this.job(who, jobId), 200, `GET /v1/jobs/${jobId} as ${who}`);
  }

  list(who: KeyName, query: Record<string, string | number> = {}): Promise<Response> {
    const qs = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
    return this.get(who, `/v1/jobs${qs ? `?${qs}` : ''}`);
  }

  cancel(who: KeyName, jobId: string): Promise<Response> {
    return this.post(who, `/v1/jobs/${jobId}/cancel`);
  }

  register(who: KeyName, payoutAddress: string): Promise<Response> {
    return this.post(who, '/v1/miners/register', { payout_address: payoutAddress });
  }

  poll(who: KeyName): Promise<Response> {
    return this.post(who, '/v1/miners/poll');
  }

  /** POST /v1/miners/poll; expects a job (200) and returns it. */
  async claim(who: KeyName): Promise<Body> {
    return expectStatus(await this.poll(who), 200, `poll as ${who}`);
  }

  complete(who: KeyName, jobId: string, result: unknown = { text: 'Hi there!' }, metrics?: object): Promise<Response> {
    return this.post(who, `/v1/miners/jobs/${jobId}/result`, metrics ? { result, metrics } : { result });
  }

  fail(who: KeyName, jobId: string, error = 'CUDA out of memory'): Promise<Response> {
    return this.post(who, `/v1/miners/jobs/${jobId}/fail`, { error });
  }

  /** Admin cancels every job still queued, so a later poll sees only what its test created. */
  async cancelAllQueued(): Promise<void> {
    for (;;) {
      const page = expectStatus(await this.list('admin', { limit: 100 }), 200, 'admin list');
      const queued = (page.items as Body[]).filter((job) => job.state === 'queued');
      if (queued.length === 0) return;
      for (const job of queued) expectStatus(await this.cancel('admin', job.job_id), 200, `admin cancel ${job.job_id}`);
    }
  }
}

/** The body of a response with the expected status; otherwise an error showing what came back. */
export function expectStatus(response: Response, status: number, what: string): Body {
  if (response.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${response.status} ${JSON.stringify(response.body)}`);
  }
  return response.body;
}

/** Text that must never appear in an error body: stack frames, source paths, SQL. */
const LEAKS = [
  /\bat [\w.<>]+ \(/, // stack frame
  /\.(ts|js):\d+/, // source position
  /node_modules/,
  /\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b/,
  /syntax for type|violates|relation "|column "/i, // PostgreSQL messages
  /QueryFailedError|TypeError|ReferenceError/,
];

/** The one error shape of docs/errors.md, nothing more, and nothing that leaks internals. */
export function expectErrorShape(body: Body, status: number, code?: string): void {
  expect(body).toEqual({
    status_code: status,
    code: code ?? expect.stringMatching(/^[A-Z][A-Z0-9_]+$/),
    message: expect.any(String),
    details: expect.any(Object),
    request_id: expect.stringMatching(/\S/),
  });
  expect(Array.isArray(body.details)).toBe(false);
  expectNoLeaks(body);
}

export function expectNoLeaks(body: Body): void {
  const text = JSON.stringify(body);
  for (const leak of LEAKS) expect(text).not.toMatch(leak);
}

/** An error response: its status, its stable code and the error shape. */
export function expectError(response: Response, status: number, code?: string): Body {
  expect({ status: response.status, code: response.body?.code }).toEqual({ status, code: code ?? expect.any(String) });
  expectErrorShape(response.body, status, code);
  return response.body;
}

/** A JobView: every field the contract names, snake_case names, ISO UTC timestamps. */
export function expectJobView(view: Body): void {
  for (const field of JOB_VIEW_FIELDS) expect(view).toHaveProperty(field);
  for (const key of Object.keys(view)) expect(key).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
  expect(view.job_id).toMatch(UUID);
  for (const field of ['requested_at', 'expires_at', 'updated_at']) expect(view[field]).toMatch(ISO_UTC);
  for (const field of ['started_at', 'completed_at']) if (view[field] !== null) expect(view[field]).toMatch(ISO_UTC);
}

/** Row counts of tables, read straight from the app's database. */
export async function countRows(t: TestApp, ...tables: string[]): Promise<Record<string, number>> {
  return withClient(t.databaseUrl, async (client) => {
    const counts: Record<string, number> = {};
    for (const table of tables) {
      const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
      counts[table] = rows[0].n;
    }
    return counts;
  });
}

/** One SQL query on the app's database (its own connection). */
export async function query<T = Body>(t: TestApp, text: string, params: unknown[] = []): Promise<T[]> {
  return withClient(t.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
}
