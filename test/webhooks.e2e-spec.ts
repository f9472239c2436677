import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Webhook } from 'standardwebhooks';
import { JobsService } from '../src/jobs/jobs.service';
import type { KeyName, TestApp } from './support/app';
import { moveDeadline } from './support/deadlines';
import { metricValue, waitFor } from './support/flow';
import { Api, expectStatus, startApp } from './support/payments';
import { ReceivedWebhook, WebhookReceiver } from './support/webhook-receiver';

// Signed webhooks (README "Webhooks") through HTTP against the real database and wallet
// daemon, received by a real HTTP server on loopback that verifies every request with
// the `standardwebhooks` library, as a client's receiver would.

type Body = any;

/** Loopback receivers need the development switch; a short retry schedule keeps recovery tests fast. */
const WEBHOOK_ENV = {
  WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
  WEBHOOK_POLL_INTERVAL_MS: '50',
  WEBHOOK_RETRY_SCHEDULE: '1,1,1',
  WEBHOOK_TIMEOUT_MS: '3000',
};

async function registerEndpoint(
  t: TestApp,
  who: KeyName,
  receiver: WebhookReceiver,
  body: Record<string, unknown> = {},
): Promise<Body> {
  const response = await t.http
    .post('/v1/webhook-endpoints')
    .set('X-Api-Key', t.keys[who])
    .send({ url: receiver.url, ...body });
  const endpoint = expectStatus(response, 201, 'POST /v1/webhook-endpoints');
  receiver.secrets = [endpoint.secret];
  return endpoint;
}

/** The Standard Webhooks headers and body shape every delivered webhook must have. */
function expectWellFormed(w: ReceivedWebhook): void {
  expect(w.verifiedBy).toEqual([0]);
  expect(w.id).toBe(w.body.data.event_id);
  expect(Number(w.timestamp)).toBeGreaterThan(Date.now() / 1000 - 120);
  expect(w.body).toEqual({
    type: expect.any(String),
    timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
    data: expect.objectContaining({ event_id: w.id }),
  });
}

describe('webhooks', () => {
  let t: TestApp;
  let api: Api;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    t = await startApp(WEBHOOK_ENV);
    api = new Api(t);
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(async () => {
    receiver = await WebhookReceiver.start();
  });
  afterEach(async () => {
    // Endpoints of one test must not receive the next test's events.
    await api.query(`DELETE FROM webhook_endpoints`);
    await receiver.close();
    await api.cancelLiveJobs();
  });

  it('registration answers the secret once; later reads never show it', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver, {
      event_types: ['payment.released'],
      description: 'billing',
    });
    expect(endpoint).toEqual({
      endpoint_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      url: receiver.url,
      event_types: ['payment.released'],
      description: 'billing',
      client_id: t.principals.client,
      enabled: true,
      disabled_reason: null,
      failing_since: null,
      previous_secret_expires_at: null,
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]+=*$/),
      created_at: expect.any(String),
    });
    const read = expectStatus(
      await t.http.get(`/v1/webhook-endpoints/${endpoint.endpoint_id}`).set('X-Api-Key', t.keys.client),
      200,
      'GET endpoint',
    );
    expect(read).not.toHaveProperty('secret');
    const list = expectStatus(
      await t.http.get('/v1/webhook-endpoints').set('X-Api-Key', t.keys.client),
      200,
      'GET endpoints',
    );
    expect(list.items.map((e: Body) => e.endpoint_id)).toEqual([endpoint.endpoint_id]);
    expect(JSON.stringify(list)).not.toContain(endpoint.secret);

    const bad = await t.http
      .post('/v1/webhook-endpoints')
      .set('X-Api-Key', t.keys.client)
      .send({ url: receiver.url, event_types: ['payment.lost'] });
    expect(bad.status).toBe(400);
    expect((await t.http.get('/v1/webhook-endpoints').set('X-Api-Key', t.keys.miner)).status).toBe(403);

    expect(
      (await t.http.delete(`/v1/webhook-endpoints/${endpoint.endpoint_id}`).set('X-Api-Key', t.keys.client)).status,
    ).toBe(204);
    expect(
      (await t.http.get(`/v1/webhook-endpoints/${endpoint.endpoint_id}`).set('X-Api-Key', t.keys.client)).status,
    ).toBe(404);
  });

  it('delivers every event type, signed, with the view as it was at the change', async () => {
    await registerEndpoint(t, 'client', receiver);
    const payout = await api.registerFreshMiner('miner');

    // created, escrowed, job.completed, released
    const done = await api.paidJob('client');
    await api.pollFor(done.job_id);
    expectStatus(await api.result('miner', done.job_id), 200, 'result');
    // canceled → refunded
    const canceled = await api.paidJob('client');
    expectStatus(await api.cancel('client', canceled.job_id), 200, 'cancel');
    // failed by the miner → refunded
    const failed = await api.paidJob('client');
    await api.pollFor(failed.job_id);
    expectStatus(await api.fail('miner', failed.job_id, 'CUDA out of memory'), 200, 'fail');
    // expired (its TTL ran out) → refunded
    const expired = await api.paidJob('client');
    await moveDeadline(t.databaseUrl, expired.job_id, -1_000);
    await t.app.get(JobsService).expireDue();
    // a payment that could not be escrowed → payment.failed and job.failed
    const unfunded = expectStatus(
      await api.postJob('client', {
        payload: { job_type: 'x' },
        payment_amount: '0.001',
        payer_address: await t.daemon.newAddress('BTC'),
      }),
      201,
      'POST /v1/jobs (unfunded)',
    );
    expect(unfunded.state).toBe('failed');

    const created = await receiver.waitFor('payment.created', done.payment_id);
    expect(created.body.data.payment).toMatchObject({
      payment_id: done.payment_id,
      job_id: done.job_id,
      client_id: t.principals.client,
      status: 'pending',
      amount: '0.00100000',
      currency: 'BTC',
      escrow_id: null,
    });
    expect(created.body.data.reason).toBe('payment_created');
    const escrowed = await receiver.waitFor('payment.escrowed', done.payment_id);
    expect(escrowed.body.data.payment).toMatchObject({
      status: 'escrowed',
      amount: '0.00100000',
      escrow_id: expect.any(String),
      escrowed_at: expect.any(String),
    });
    const completed = await receiver.waitFor('job.completed', done.job_id);
    expect(completed.body.data.job).toMatchObject({
      job_id: done.job_id,
      state: 'completed',
      assigned_miner_id: t.principals.miner,
      result: { text: 'Hi there!' },
      payment_id: done.payment_id,
      payment_amount: '0.00100000',
      payment_currency: 'BTC',
    });
    expect(completed.body.data).not.toHaveProperty('payment');
    const released = await receiver.waitFor('payment.released', done.payment_id);
    // Final, so the view at the change is the view now.
    expect(released.body.data.payment).toEqual(await api.payment(done.payment_id, 'client'));
    expect(released.body.data.payment).toMatchObject({ payee_address: payout, transaction_hash: expect.any(String) });

    const jobCanceled = await receiver.waitFor('job.canceled', canceled.job_id);
    expect(jobCanceled.body.data.job).toMatchObject({ state: 'canceled', error: expect.any(String) });
    expect(jobCanceled.body.data.reason).toBe(jobCanceled.body.data.job.error);
    const refunded = await receiver.waitFor('payment.refunded', canceled.payment_id);
    expect(refunded.body.data.payment).toEqual(await api.payment(canceled.payment_id, 'client'));

    const jobFailed = await receiver.waitFor('job.failed', failed.job_id);
    expect(jobFailed.body.data).toMatchObject({
      job: { state: 'failed', error: 'CUDA out of memory' },
      reason: 'CUDA out of memory',
    });
    await receiver.waitFor('payment.refunded', failed.payment_id);

    const jobExpired = await receiver.waitFor('job.expired', expired.job_id);
    expect(jobExpired.body.data.job).toMatchObject({ job_id: expired.job_id, state: 'expired' });
    await receiver.waitFor('payment.refunded', expired.payment_id);

    const paymentFailed = await receiver.waitFor('payment.failed', unfunded.payment_id);
    expect(paymentFailed.body.data.payment).toMatchObject({
      status: 'failed',
      failure_reason: expect.stringMatching(/insufficient/i),
    });
    await receiver.waitFor('job.failed', unfunded.job_id);

    const accepted = [...receiver.accepted().values()];
    accepted.forEach(expectWellFormed);
    expect(new Set(accepted.map((w) => w.body.type))).toEqual(
      new Set([
        'payment.created',
        'payment.escrowed',
        'payment.released',
        'payment.refunded',
        'payment.failed',
        'job.completed',
        'job.failed',
        'job.canceled',
        'job.expired',
      ]),
    );
    // Exactly the events of these five payments: 5 created, 4 escrowed, 1 released, 3 refunded, 1 failed; 5 jobs ended.
    await sleep(300);
    expect(receiver.accepted().size).toBe(19);
    // No decision states (releasing/refunding) and no event twice.
    expect(receiver.received.length).toBe(19);
  });

  it('changes made by the batch routes have their events too (the triggers see every path)', async () => {
    await registerEndpoint(t, 'client', receiver, { event_types: ['payment.escrowed', 'payment.refunded'] });
    const created = expectStatus(
      await t.http
        .post('/v1/jobs/batch')
        .set('X-Api-Key', t.keys.client)
        .send({ items: [1, 2, 3].map(() => ({ payload: { job_type: 'x' }, payment_amount: '0.001' })) }),
      200,
      'POST /v1/jobs/batch',
    );
    const jobs: Body[] = created.items.map((item: Body) => item.job);
    for (const job of jobs) await receiver.waitFor('payment.escrowed', job.payment_id);
    expectStatus(
      await t.http
        .post('/v1/payments/batch')
        .set('X-Api-Key', t.keys.client)
        .send({ items: jobs.map((job) => ({ payment_id: job.payment_id, action: 'refund' })) }),
      200,
      'POST /v1/payments/batch',
    );
    for (const job of jobs) {
      const refunded = await receiver.waitFor('payment.refunded', job.payment_id);
      expect(refunded.body.data.payment).toEqual(await api.payment(job.payment_id, 'client'));
    }
    await sleep(300);
    expect(receiver.received).toHaveLength(6);
  });

  it('an endpoint receives only the event types it asked for', async () => {
    await registerEndpoint(t, 'client', receiver, { event_types: ['payment.escrowed'] });
    const job = await api.paidJob('client');
    await receiver.waitFor('payment.escrowed', job.payment_id);
    expectStatus(await api.cancel('client', job.job_id), 200, 'cancel');
    await waitFor('the refund', async () => (await api.payment(job.payment_id)).status === 'refunded');
    await sleep(500);
    expect(receiver.received.map((w) => w.body.type)).toEqual(['payment.escrowed']);
  });

  it('a receiver that fails and then recovers gets every event, each retried with the same webhook-id', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver);
    // Each event's first two attempts fail (a 500, then a dropped connection).
    receiver.answer = (w) => (w.attempt === 1 ? 500 : w.attempt === 2 ? 503 : 200);
    const jobs = [await api.paidJob('client'), await api.paidJob('client'), await api.paidJob('client')];
    for (const job of jobs) {
      await receiver.waitFor('payment.created', job.payment_id, 30_000);
      await receiver.waitFor('payment.escrowed', job.payment_id, 30_000);
    }
    const attempts = receiver.attemptsById();
    expect(attempts.size).toBe(6);
    for (const count of attempts.values()) expect(count).toBe(3);
    [...receiver.accepted().values()].forEach(expectWellFormed);
    // Retries about a second apart (WEBHOOK_RETRY_SCHEDULE=1,1,1), never at once.
    for (const id of attempts.keys()) {
      const times = receiver.received.filter((w) => w.id === id).map((w) => w.at);
      expect(times[1] - times[0]).toBeGreaterThanOrEqual(900);
    }

    // The receiver has answered the last attempts; the worker records them once its batch is done.
    const log = await waitFor('every delivery recorded delivered', async () => {
      const page = expectStatus(
        await t.http.get(`/v1/webhook-endpoints/${endpoint.endpoint_id}/deliveries`).set('X-Api-Key', t.keys.client),
        200,
        'GET deliveries',
      );
      return page.items.length === 6 && page.items.every((d: Body) => d.status === 'delivered') ? page : undefined;
    });
    expect(log.items).toHaveLength(6);
    for (const delivery of log.items) {
      expect(delivery).toMatchObject({ status: 'delivered', attempt: 3, status_code: 200, next_attempt_at: null });
      expect(delivery.attempts.map((a: Body) => a.status_code)).toEqual([200, 503, 500]);
      expect(delivery.attempts[2].error).toBe('answered 500');
    }
    // Per-endpoint metrics: 6 delivered, 12 failed attempts scheduled again.
    const labels = { endpoint_id: endpoint.endpoint_id };
    expect(await metricValue(t.http, 'webhook_attempts_total', { ...labels, outcome: 'delivered' })).toBe(6);
    expect(await metricValue(t.http, 'webhook_attempts_total', { ...labels, outcome: 'retry' })).toBe(12);
    expect(await metricValue(t.http, 'webhook_attempt_duration_seconds_count', labels)).toBe(18);
  });

  it('an answer after the timeout and a redirect are failed attempts (the redirect is not followed), then retried', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver, { event_types: ['payment.created'] });
    // Never answered (the sender gives up after WEBHOOK_TIMEOUT_MS=3000), then a redirect, then a 200.
    receiver.answer = (w) => (w.attempt === 1 ? 'hold' : w.attempt === 2 ? 302 : 200);
    const job = await api.paidJob('client');
    const w = await receiver.waitFor('payment.created', job.payment_id, 30_000);
    expect(w.attempt).toBe(3);
    expectWellFormed(w);
    const delivery = await waitFor('the delivery to be recorded delivered', async () => {
      const items = expectStatus(
        await t.http.get(`/v1/webhook-endpoints/${endpoint.endpoint_id}/deliveries`).set('X-Api-Key', t.keys.client),
        200,
        'deliveries',
      ).items;
      return items[0]?.status === 'delivered' ? items[0] : undefined;
    });
    expect(delivery.attempts.map((a: Body) => [a.status_code, a.error])).toEqual([
      [200, null],
      [302, 'answered 302'],
      [null, 'timed out'],
    ]);
    expect(delivery.attempts[2].duration_ms).toBeGreaterThanOrEqual(2900);
  });

  it('a delivery whose schedule is spent has failed; a manual retry sends it again', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver, { event_types: ['payment.created'] });
    receiver.answer = () => 500;
    const job = await api.paidJob('client');
    const path = `/v1/webhook-endpoints/${endpoint.endpoint_id}/deliveries`;
    const failed = await waitFor(
      'the delivery to fail (1 attempt + 3 retries)',
      async () => {
        const items = expectStatus(await t.http.get(path).set('X-Api-Key', t.keys.client), 200, 'deliveries').items;
        return items[0]?.status === 'failed' ? items[0] : undefined;
      },
      20_000,
    );
    expect(failed).toMatchObject({ attempt: 4, status_code: 500, next_attempt_at: null, type: 'payment.created' });
    expect(receiver.attemptsById().get(failed.event_id)).toBe(4);

    receiver.answer = () => 204;
    const retried = expectStatus(
      await t.http.post(`${path}/${failed.delivery_id}/retry`).set('X-Api-Key', t.keys.client),
      200,
      'retry',
    );
    expect(retried).toMatchObject({ delivery_id: failed.delivery_id, status: 'pending' });
    const w = await receiver.waitFor('payment.created', job.payment_id);
    expect(w.id).toBe(failed.event_id);
    expectWellFormed(w);
    await waitFor('the delivery to be recorded delivered', async () => {
      const items = expectStatus(await t.http.get(path).set('X-Api-Key', t.keys.client), 200, 'deliveries').items;
      return items[0]?.status === 'delivered';
    });
    expect(
      (await t.http.post(`${path}/00000000-0000-4000-8000-000000000000/retry`).set('X-Api-Key', t.keys.client)).status,
    ).toBe(404);
  });

  it('after a rotation, both the old and the new secret verify during the overlap', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver, { event_types: ['payment.created'] });
    const oldSecret = endpoint.secret;
    const rotated = expectStatus(
      await t.http.post(`/v1/webhook-endpoints/${endpoint.endpoint_id}/rotate-secret`).set('X-Api-Key', t.keys.client),
      200,
      'rotate',
    );
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(oldSecret);
    expect(Date.parse(rotated.previous_secret_expires_at) - Date.now()).toBeGreaterThan(23 * 3600_000);
    receiver.secrets = [oldSecret, rotated.secret];

    const job = await api.paidJob('client');
    const w = await receiver.waitFor('payment.created', job.payment_id);
    expect(w.signature.split(' ')).toHaveLength(2);
    expect(w.verifiedBy).toEqual([0, 1]);
    // Each secret alone, as a receiver holding only one of them would verify.
    const headers = { 'webhook-id': w.id, 'webhook-timestamp': w.timestamp, 'webhook-signature': w.signature };
    expect(new Webhook(oldSecret).verify(w.raw, headers)).toEqual(w.body);
    expect(new Webhook(rotated.secret).verify(w.raw, headers)).toEqual(w.body);
  });

  it("a client's endpoint gets only its own events; an admin's gets everyone's; another client's endpoint is not found", async () => {
    const other = await WebhookReceiver.start();
    const admin = await WebhookReceiver.start();
    try {
      const mine = await registerEndpoint(t, 'client', receiver, { event_types: ['payment.escrowed'] });
      await registerEndpoint(t, 'client2', other, { event_types: ['payment.escrowed'] });
      await registerEndpoint(t, 'admin', admin, { event_types: ['payment.escrowed'] });

      const a = await api.paidJob('client');
      const b = await api.paidJob('client2');
      await receiver.waitFor('payment.escrowed', a.payment_id);
      await other.waitFor('payment.escrowed', b.payment_id);
      await admin.waitFor('payment.escrowed', a.payment_id);
      await admin.waitFor('payment.escrowed', b.payment_id);
      await sleep(300);
      expect(receiver.received.map((w) => w.body.data.payment.client_id)).toEqual([t.principals.client]);
      expect(other.received.map((w) => w.body.data.payment.client_id)).toEqual([t.principals.client2]);
      expect(admin.received).toHaveLength(2);

      for (const path of ['', '/deliveries']) {
        const response = await t.http
          .get(`/v1/webhook-endpoints/${mine.endpoint_id}${path}`)
          .set('X-Api-Key', t.keys.client2);
        expect(response.status).toBe(404);
        expect(response.body.code).toBe('WEBHOOK_ENDPOINT_NOT_FOUND');
      }
      expect(
        (await t.http.post(`/v1/webhook-endpoints/${mine.endpoint_id}/rotate-secret`).set('X-Api-Key', t.keys.client2))
          .status,
      ).toBe(404);
      expect(
        (await t.http.delete(`/v1/webhook-endpoints/${mine.endpoint_id}`).set('X-Api-Key', t.keys.client2)).status,
      ).toBe(404);
      const client2List = expectStatus(
        await t.http.get('/v1/webhook-endpoints').set('X-Api-Key', t.keys.client2),
        200,
        'list',
      );
      expect(client2List.items).toHaveLength(1);
      const adminList = expectStatus(
        await t.http.get('/v1/webhook-endpoints').set('X-Api-Key', t.keys.admin),
        200,
        'list',
      );
      expect(adminList.items).toHaveLength(3);
    } finally {
      await other.close();
      await admin.close();
    }
  });

  it('nothing is written to the outbox while no endpoint is enabled', async () => {
    const before = await api.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_events`);
    const job = await api.paidJob('client');
    expectStatus(await api.cancel('client', job.job_id), 200, 'cancel');
    await waitFor('the refund', async () => (await api.payment(job.payment_id)).status === 'refunded');
    const after = await api.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_events`);
    expect(after[0].n).toBe(before[0].n);
  });
});

describe('webhooks: an endpoint failing for too long', () => {
  let t: TestApp;
  let api: Api;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    t = await startApp({
      ...WEBHOOK_ENV,
      WEBHOOK_RETRY_SCHEDULE: '1,1,1,1,1,1,1,1',
      WEBHOOK_DISABLE_AFTER_SECONDS: '2',
      WEBHOOK_SECRET_OVERLAP_SECONDS: '1',
      WEBHOOK_SECRETS_KEY: randomBytes(32).toString('base64'),
    });
    api = new Api(t);
    receiver = await WebhookReceiver.start();
  });
  afterAll(async () => {
    await receiver?.close();
    await t?.close();
  });

  it('is disabled, its pending deliveries set aside; a manual retry enables it again and delivers', async () => {
    const endpoint = await registerEndpoint(t, 'client', receiver, { event_types: ['payment.created'] });
    receiver.answer = () => 500;
    const job = await api.paidJob('client');
    const path = `/v1/webhook-endpoints/${endpoint.endpoint_id}`;
    const disabled = await waitFor(
      'the endpoint to be disabled',
      async () => {
        const view = expectStatus(await t.http.get(path).set('X-Api-Key', t.keys.client), 200, 'endpoint');
        return view.enabled ? undefined : view;
      },
      20_000,
    );
    expect(disabled.disabled_reason).toMatch(/failed since/);
    const [delivery] = expectStatus(
      await t.http.get(`${path}/deliveries`).set('X-Api-Key', t.keys.client),
      200,
      'deliveries',
    ).items;
    expect(delivery).toMatchObject({ status: 'failed', next_attempt_at: null });
    const attemptsSoFar = receiver.received.length;
    expect(attemptsSoFar).toBeGreaterThanOrEqual(3);
    await sleep(1500);
    expect(receiver.received.length).toBe(attemptsSoFar);

    receiver.answer = () => 200;
    expectStatus(
      await t.http.post(`${path}/deliveries/${delivery.delivery_id}/retry`).set('X-Api-Key', t.keys.client),
      200,
      'retry',
    );
    await receiver.waitFor('payment.created', job.payment_id);
    const view = expectStatus(await t.http.get(path).set('X-Api-Key', t.keys.client), 200, 'endpoint');
    expect(view).toMatchObject({ enabled: true, disabled_reason: null, failing_since: null });
  });
  it('with WEBHOOK_SECRETS_KEY, secrets are sealed at rest and webhooks still verify with the secret shown', async () => {
    const other = await WebhookReceiver.start();
    try {
      const endpoint = await registerEndpoint(t, 'client2', other, { event_types: ['payment.created'] });
      const [row] = await api.query<{ secret: string }>(`SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1`, [
        endpoint.endpoint_id,
      ]);
      expect(row.secret).toMatch(/^enc:v1:/);
      expect(row.secret).not.toContain(endpoint.secret.slice('whsec_'.length));
      const job = await api.paidJob('client2');
      const w = await other.waitFor('payment.created', job.payment_id);
      expect(w.verifiedBy).toEqual([0]);
    } finally {
      await other.close();
    }
  });

  it('once the rotation overlap has passed, only the new secret signs', async () => {
    const other = await WebhookReceiver.start();
    try {
      const endpoint = await registerEndpoint(t, 'client2', other, { event_types: ['payment.created'] });
      const rotated = expectStatus(
        await t.http
          .post(`/v1/webhook-endpoints/${endpoint.endpoint_id}/rotate-secret`)
          .set('X-Api-Key', t.keys.client2),
        200,
        'rotate',
      );
      other.secrets = [endpoint.secret, rotated.secret];
      await sleep(1500); // WEBHOOK_SECRET_OVERLAP_SECONDS=1
      const job = await api.paidJob('client2');
      const w = await other.waitFor('payment.created', job.payment_id);
      expect(w.signature.split(' ')).toHaveLength(1);
      expect(w.verifiedBy).toEqual([1]);
    } finally {
      await other.close();
    }
  });
});

describe('webhooks: private addresses without WEBHOOK_ALLOW_PRIVATE_URLS', () => {
  let t: TestApp;
  let api: Api;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    t = await startApp({ WEBHOOK_POLL_INTERVAL_MS: '50', WEBHOOK_RETRY_SCHEDULE: '1' });
    api = new Api(t);
    receiver = await WebhookReceiver.start();
  });
  afterAll(async () => {
    await receiver?.close();
    await t?.close();
  });

  it.each([
    'http://127.0.0.1:9/hook',
    'http://localhost:9/hook',
    'http://[::1]:9/hook',
    'https://10.0.0.8/hook',
    'https://169.254.169.254/latest/meta-data',
    'http://[::ffff:127.0.0.1]/hook',
  ])('refuses %s at registration (400 WEBHOOK_URL_NOT_ALLOWED)', async (url) => {
    const response = await t.http.post('/v1/webhook-endpoints').set('X-Api-Key', t.keys.client).send({ url });
    expect(response.status).toBe(400);
    expect(response.body.code).toBe('WEBHOOK_URL_NOT_ALLOWED');
  });

  it('checks again at delivery time: an endpoint whose address is private by then is never sent to', async () => {
    // As if the name resolved to a public address at registration and to loopback now.
    await api.query(
      `INSERT INTO webhook_endpoints (endpoint_id, client_id, created_by, url, event_types, secret)
       VALUES (gen_random_uuid(), $1, $1, $2, ARRAY['payment.created'], 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw1rrc9QZ0Q1g=')`,
      [t.principals.client, receiver.url.replace('127.0.0.1', 'localhost')],
    );
    const job = await api.paidJob('client');
    const [row] = await waitFor('the attempt to be recorded', async () => {
      const rows = await api.query<{ status_code: number | null; error: string }>(
        `SELECT a.status_code, a.error FROM webhook_attempts a JOIN webhook_deliveries d USING (delivery_id)
           JOIN webhook_events e USING (event_id) WHERE e.payment_id = $1`,
        [job.payment_id],
      );
      return rows.length ? rows : undefined;
    });
    expect(row.status_code).toBeNull();
    expect(row.error).toMatch(/loopback, private or link-local/);
    expect(receiver.received).toHaveLength(0);
  });
});
