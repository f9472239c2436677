import { setTimeout as sleep } from 'node:timers/promises';
import { Decimal } from 'decimal.js';
import type { Response } from 'supertest';
import { PaymentsService } from '../../src/payments/payments.service';
import { KeyName, startTestApp, TestApp, TestAppOptions } from './app';
import { withClient } from './postgres';

/**
 * Helpers for the payment e2e specs: a test app whose env settings do not leak into the
 * next app of the same file, thin HTTP calls that return the raw response (specs assert
 * statuses themselves), exact money arithmetic, and waiting for the re-drive worker.
 */

// Response bodies are checked field by field in the specs.
export type Body = any;

/** Exact decimal arithmetic for money in tests (never JS number math). */
export const Dec = Decimal.clone({ precision: 40, rounding: Decimal.ROUND_DOWN, toExpNeg: -40, toExpPos: 40 });
export type Dec = Decimal;

export const sat8 = (value: Decimal.Value): string => new Dec(value).toFixed(8);
/** `after - before` as an 8-decimal string. */
export const diff = (before: string, after: string): string => sat8(new Dec(after).minus(before));
export const sum = (values: readonly Decimal.Value[]): Decimal =>
  values.reduce<Decimal>((s, v) => s.plus(v), new Dec(0));

/**
 * startTestApp() copies its env onto process.env; restore it afterwards so a setting one
 * app needs (no retries, a short lease) is not inherited by the next app of the file.
 * Rate limiting is off: bulk tests send thousands of requests.
 */
export async function startApp(env: Record<string, string> = {}, options: TestAppOptions = {}): Promise<TestApp> {
  const saved = { ...process.env };
  try {
    return await startTestApp({ RATE_LIMIT_PER_MINUTE: '0', ...env }, options);
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

/** The seed's `POST /v1/jobs` body, byte for byte (payment_amount is a JSON number). */
export const SEED_JOB_JSON =
  '{"payload": {"job_type": "ai_inference", "parameters": {"model": "gpt-4", "prompt": "Hello"}}, "constraints": {}, "ttl_seconds": 900, "payment_amount": 0.001, "payment_currency": "BTC", "escrow_timeout_seconds": 3600}';

export const PAYLOAD = { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } };

export class Api {
  constructor(readonly t: TestApp) {}

  key(who: KeyName): string {
    return this.t.keys[who];
  }

  // ------------------------------------------------------------ raw calls

  postJob(who: KeyName, body: object | string): Promise<Response> {
    const call = this.t.http.post('/v1/jobs').set('X-Api-Key', this.key(who)).set('Content-Type', 'application/json');
    return call.send(typeof body === 'string' ? body : JSON.stringify(body));
  }
  getJobRaw(who: KeyName, jobId: string): Promise<Response> {
    return this.t.http.get(`/v1/jobs/${jobId}`).set('X-Api-Key', this.key(who));
  }
  cancel(who: KeyName, jobId: string): Promise<Response> {
    return this.t.http.post(`/v1/jobs/${jobId}/cancel`).set('X-Api-Key', this.key(who)).send({});
  }
  postPayment(who: KeyName, body: object): Promise<Response> {
    return this.t.http.post('/v1/payments').set('X-Api-Key', this.key(who)).send(body);
  }
  getPaymentRaw(who: KeyName, paymentId: string): Promise<Response> {
    return this.t.http.get(`/v1/payments/${paymentId}`).set('X-Api-Key', this.key(who));
  }
  jobPaymentRaw(who: KeyName, jobId: string): Promise<Response> {
    return this.t.http.get(`/v1/jobs/${jobId}/payment`).set('X-Api-Key', this.key(who));
  }
  release(who: KeyName, paymentId: string, body: object | string = {}): Promise<Response> {
    const call = this.t.http
      .post(`/v1/payments/${paymentId}/release`)
      .set('X-Api-Key', this.key(who))
      .set('Content-Type', 'application/json');
    return call.send(typeof body === 'string' ? body : JSON.stringify(body));
  }
  refund(who: KeyName, paymentId: string, body: object = {}): Promise<Response> {
    return this.t.http.post(`/v1/payments/${paymentId}/refund`).set('X-Api-Key', this.key(who)).send(body);
  }
  pollRaw(who: KeyName = 'miner'): Promise<Response> {
    return this.t.http.post('/v1/miners/poll').set('X-Api-Key', this.key(who)).send({});
  }
  result(who: KeyName, jobId: string, result: unknown = { text: 'Hi there!' }): Promise<Response> {
    return this.t.http.post(`/v1/miners/jobs/${jobId}/result`).set('X-Api-Key', this.key(who)).send({ result });
  }
  fail(who: KeyName, jobId: string, error = 'CUDA out of memory'): Promise<Response> {
    return this.t.http.post(`/v1/miners/jobs/${jobId}/fail`).set('X-Api-Key', this.key(who)).send({ error });
  }

  // ------------------------------------------------------------ calls that must succeed

  /** POST /v1/jobs with a payment (default: 0.001 BTC from the client's wallet); expects 201. */
  async paidJob(who: KeyName = 'client', payment: Record<string, unknown> = {}): Promise<Body> {
    const response = await this.postJob(who, { payload: PAYLOAD, payment_amount: '0.001', ...payment });
    return expectStatus(response, 201, 'POST /v1/jobs');
  }

  async unpaidJob(who: KeyName = 'client'): Promise<Body> {
    return expectStatus(await this.postJob(who, { payload: PAYLOAD }), 201, 'POST /v1/jobs');
  }

  async job(jobId: string, who: KeyName = 'admin'): Promise<Body> {
    return expectStatus(await this.getJobRaw(who, jobId), 200, 'GET /v1/jobs/:id');
  }

  async payment(paymentId: string, who: KeyName = 'admin'): Promise<Body> {
    return expectStatus(await this.getPaymentRaw(who, paymentId), 200, 'GET /v1/payments/:id');
  }

  async events(paymentId: string, who: KeyName = 'admin'): Promise<Body[]> {
    const response = await this.t.http.get(`/v1/payments/${paymentId}/events`).set('X-Api-Key', this.key(who));
    return expectStatus(response, 200, 'GET /v1/payments/:id/events').items;
  }

  async receipt(paymentId: string, who: KeyName = 'client'): Promise<Body> {
    const response = await this.t.http.get(`/v1/payments/${paymentId}/receipt`).set('X-Api-Key', this.key(who));
    return expectStatus(response, 200, 'GET /v1/payments/:id/receipt');
  }

  async receiptKeys(): Promise<Body[]> {
    return expectStatus(await this.t.http.get('/v1/receipts/keys'), 200, 'GET /v1/receipts/keys').keys;
  }

  /** Registers a fresh payout address at the daemon for the miner and returns it. */
  async registerFreshMiner(who: KeyName = 'miner'): Promise<string> {
    const address = await this.t.daemon.newAddress('BTC');
    const response = await this.t.http
      .post('/v1/miners/register')
      .set('X-Api-Key', this.key(who))
      .send({ payout_address: address });
    expectStatus(response, 200, 'POST /v1/miners/register');
    return address;
  }

  /** Polls and expects to be handed exactly this job. */
  async pollFor(jobId: string, who: KeyName = 'miner'): Promise<Body> {
    const job = expectStatus(await this.pollRaw(who), 200, 'POST /v1/miners/poll');
    if (job.job_id !== jobId)
      throw new Error(`poll handed out job ${job.job_id}, expected ${jobId} (a leftover from an earlier test?)`);
    return job;
  }

  /** Cancels (as admin) every job still queued or running, so the next test polls a clean queue. */
  async cancelLiveJobs(): Promise<void> {
    const live = await this.query<{ job_id: string }>(`SELECT job_id FROM job WHERE state IN ('queued','running')`);
    for (const { job_id } of live) await this.cancel('admin', job_id);
  }

  // ------------------------------------------------------------ database and daemon

  async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(this.t.databaseUrl, async (client) => (await client.query<T>(text, params)).rows);
  }

  balance(address: string): Promise<string> {
    return this.t.daemon.balance(address, 'BTC');
  }

  /**
   * Runs the re-drive worker (as the sweeper would, again and again) until the payment
   * reaches `status`; backoff after a failed daemon call makes a single call too early.
   */
  async redriveUntil(paymentId: string, status: string, timeoutMs = 10_000): Promise<Body> {
    const payments = this.t.app.get(PaymentsService);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await payments.redriveDue();
      const payment = await this.payment(paymentId);
      if (payment.status === status) return payment;
      if (Date.now() > deadline)
        throw new Error(
          `payment ${paymentId} is still ${payment.status} after ${timeoutMs} ms of re-drives, expected ${status}`,
        );
      await sleep(100);
    }
  }
}

export function expectStatus(response: Response, status: number, what: string): Body {
  if (response.status !== status) {
    throw new Error(`${what} answered ${response.status}, expected ${status}: ${JSON.stringify(response.body)}`);
  }
  return response.body;
}

/** Runs `work` over `items`, at most `size` at a time. */
export async function inBatches<T, R>(
  items: readonly T[],
  size: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; start += size) {
    const batch = items.slice(start, start + size);
    results.push(...(await Promise.all(batch.map((item, i) => work(item, start + i)))));
  }
  return results;
}
