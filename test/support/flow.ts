import { setTimeout as sleep } from 'node:timers/promises';
import type request from 'supertest';
import { withClient } from './postgres';

/**
 * Small steps the payment e2e specs share: paid jobs, miners, metrics, the database's
 * view of a payment, and waiting for something to become true.
 */

type Http = request.Agent;
// Response bodies are checked field by field in the specs.
type Body = any;

export interface PaidJobOptions {
  amount?: string;
  escrow_timeout_seconds?: number;
  ttl_seconds?: number;
  refund_address?: string;
  idempotencyKey?: string;
}

/** POST /v1/jobs with a payment; expects 201 and returns the JobView. */
export async function createPaidJob(http: Http, clientKey: string, options: PaidJobOptions = {}): Promise<Body> {
  const { idempotencyKey, amount = '0.001', ...rest } = options;
  let call = http.post('/v1/jobs').set('X-Api-Key', clientKey);
  if (idempotencyKey) call = call.set('Idempotency-Key', idempotencyKey);
  const response = await call.send({
    payload: { job_type: 'ai_inference', parameters: { prompt: 'hi' } },
    payment_amount: amount,
    ...rest,
  });
  if (response.status !== 201)
    throw new Error(`POST /v1/jobs answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

export async function registerMiner(http: Http, minerKey: string, payoutAddress: string): Promise<void> {
  const response = await http
    .post('/v1/miners/register')
    .set('X-Api-Key', minerKey)
    .send({ payout_address: payoutAddress });
  if (response.status !== 200)
    throw new Error(`register answered ${response.status}: ${JSON.stringify(response.body)}`);
}

/** Claims the oldest dispatchable job; expects one (200). */
export async function pollJob(http: Http, minerKey: string): Promise<Body> {
  const response = await http.post('/v1/miners/poll').set('X-Api-Key', minerKey).send({});
  if (response.status !== 200) throw new Error(`poll answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

/** Polls until the miner is handed `jobId` (older queued jobs are claimed on the way); fails if the queue runs dry first. */
export async function claimJob(http: Http, minerKey: string, jobId: string): Promise<Body> {
  for (;;) {
    const response = await http.post('/v1/miners/poll').set('X-Api-Key', minerKey).send({});
    if (response.status !== 200) throw new Error(`poll answered ${response.status} before job ${jobId} was handed out`);
    if (response.body.job_id === jobId) return response.body;
  }
}

export async function getPayment(http: Http, key: string, paymentId: string): Promise<Body> {
  const response = await http.get(`/v1/payments/${paymentId}`).set('X-Api-Key', key);
  if (response.status !== 200)
    throw new Error(`GET payment answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

export async function getJob(http: Http, key: string, jobId: string): Promise<Body> {
  const response = await http.get(`/v1/jobs/${jobId}`).set('X-Api-Key', key);
  if (response.status !== 200) throw new Error(`GET job answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

export async function paymentEvents(http: Http, key: string, paymentId: string): Promise<Body[]> {
  const response = await http.get(`/v1/payments/${paymentId}/events`).set('X-Api-Key', key);
  if (response.status !== 200)
    throw new Error(`GET events answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body.items;
}

/**
 * Sum of the samples of a Prometheus metric whose labels include `labels`
 * (0 when there is none), from the text exposition at `/metrics`.
 */
export async function metricValue(http: Http, name: string, labels: Record<string, string> = {}): Promise<number> {
  const response = await http.get('/metrics');
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return sumSamples(response.text, name, labels);
}

export function sumSamples(exposition: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const present: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      present[key] = value;
    if (Object.entries(labels).every(([key, value]) => present[key] === value)) sum += Number(match[3]);
  }
  return sum;
}

/** Polls `probe` until it returns something other than undefined/false; fails with `what` on timeout. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    await sleep(intervalMs);
  }
}

export async function sleepUntil(epochMs: number): Promise<void> {
  const wait = epochMs - Date.now();
  if (wait > 0) await sleep(wait);
}

/** One SQL query on a test database (its own connection). */
export async function query<T = Record<string, any>>(
  databaseUrl: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return withClient(databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
}

/** Runs `work` over `items`, at most `limit` at a time; results in input order. */
export async function mapConcurrent<T, R>(
  items: T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index], index);
      }
    }),
  );
  return results;
}

/** Kinds of the daemon's transfers for one escrow, sorted: `['create', 'refund']` for a refunded one. */
export function kinds(transfers: { kind: string }[]): string[] {
  return transfers.map((t) => t.kind).sort();
}
