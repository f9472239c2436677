import { Money } from '../src/common/money';
import { JobsService } from '../src/jobs/jobs.service';
import { PaymentsService } from '../src/payments/payments.service';
import { verifyReceipt } from '../src/receipts/receipt-signer';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon, WalletDaemonHelper } from './support/daemon';
import { moveDeadline } from './support/deadlines';
import { WebhookReceiver } from './support/webhook-receiver';
import {
  claimJob,
  createPaidJob,
  getJob,
  getPayment,
  paymentEvents,
  query,
  registerMiner,
  waitFor,
} from './support/flow';

// README "Escrow lifecycle": partial release (the miner is paid part of the escrow, the
// client gets the rest back, in one settlement) and extension (a job and its escrow get
// more time, and the expiry sweep honours it). Through HTTP, against the real PostgreSQL
// and the real local wallet daemon; the daemon's balances are the proof of what moved.

// Response bodies are checked field by field below.
type Body = any;

/** Limits small enough to reach in a test (a job may live a day, an escrow two hours after its hold). */
const LIMITS = { JOB_TTL_MAX_SECONDS: '86400', ESCROW_MAX_TIMEOUT_SECONDS: '7200' };

/**
 * Time passing for these jobs without waiting for it: every deadline of the jobs and their
 * payments comes `seconds` closer to the database's clock. (moveDeadline sets a deadline
 * outright; this keeps the distance between an extended and an unextended deadline.)
 */
async function advanceTime(databaseUrl: string, jobIds: string[], seconds: number): Promise<void> {
  await query(
    databaseUrl,
    `WITH jobs AS (UPDATE job SET expires_at = expires_at - $2::int * interval '1 second' WHERE job_id = ANY($1::uuid[]))
     UPDATE job_payments SET expires_at = expires_at - $2::int * interval '1 second' WHERE job_id = ANY($1::uuid[])`,
    [jobIds, seconds],
  );
}

async function daemonEscrow(daemon: WalletDaemonHelper, escrowId: string): Promise<Body> {
  const response = await fetch(`${daemon.endpoint.url}/api/v1/escrow/${escrowId}`, {
    headers: { authorization: `Bearer ${daemon.endpoint.token}` },
  });
  expect(response.status).toBe(200);
  return response.json();
}

const plus = (iso: string, seconds: number) => new Date(Date.parse(iso) + seconds * 1000).toISOString();

describe('escrow lifecycle', () => {
  let t: TestApp;
  let payout: string;

  beforeAll(async () => {
    t = await startTestApp(LIMITS);
    payout = await t.daemon.newAddress();
    await registerMiner(t.http, t.keys.miner, payout);
  });

  afterEach(async () => {
    await t.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await t?.close();
  });

  const post = (key: keyof TestApp['keys'], path: string, body: unknown = {}) =>
    t.http
      .post(path)
      .set('X-Api-Key', t.keys[key])
      .send(body as object);

  /** A paid job running on the test miner, refunding to a fresh address of its own (so what it gets is exact). */
  const runningJob = async (amount = '0.001', options: { escrow_timeout_seconds?: number } = {}) => {
    const refundAddress = await t.daemon.newAddress();
    const job = await createPaidJob(t.http, t.keys.client, { amount, refund_address: refundAddress, ...options });
    await claimJob(t.http, t.keys.miner, job.job_id);
    return { ...job, refundAddress };
  };

  const balance = async (address: string) => new Money(await t.daemon.balance(address));
  const eventsOf = async (paymentId: string) => paymentEvents(t.http, t.keys.client, paymentId);

  describe('partial release', () => {
    it('pays the miner exactly `amount` and the refund address exactly the rest, in one settlement, with both amounts on record', async () => {
      const job = await runningJob('0.001');
      const payoutBefore = await balance(payout);

      const response = await post('client', `/v1/payments/${job.payment_id}/release`, {
        amount: '0.0004',
        reason: 'two of five frames',
      });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({
        status: 'released',
        amount: '0.00100000',
        released_amount: '0.00040000',
        refunded_amount: '0.00060000',
        payee_address: payout,
        refund_address: job.refundAddress,
        refund_transaction_hash: null,
        settle_reason: 'two of five frames',
      });
      const payment = response.body;

      // The daemon's balances: the miner got 0.0004, the refund address 0.0006, the hold nothing.
      expect((await balance(payout)).minus(payoutBefore).toFixed(8)).toBe('0.00040000');
      expect((await balance(job.refundAddress)).toFixed(8)).toBe('0.00060000');
      expect((await balance(payment.escrow_address)).isZero()).toBe(true);
      // One settlement: a single release transfer with both credits, its hash the payment's.
      const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
      expect(transfers.map((x) => x.kind)).toEqual(['create', 'release']);
      expect(transfers[1]).toMatchObject({
        transaction_hash: payment.transaction_hash,
        amount: '0.00100000',
        credits: [
          { address: payout, amount: '0.00040000' },
          { address: job.refundAddress, amount: '0.00060000' },
        ],
      });
      expect(await daemonEscrow(t.daemon, payment.escrow_id)).toMatchObject({
        state: 'released',
        released_amount: '0.00040000',
        refunded_amount: '0.00060000',
      });

      // The audit trail carries both amounts on the decision and on the outcome.
      const events = await eventsOf(job.payment_id);
      expect(events.slice(2)).toEqual([
        expect.objectContaining({
          from: 'escrowed',
          to: 'releasing',
          reason: 'two of five frames',
          details: { released_amount: '0.00040000', refunded_amount: '0.00060000' },
        }),
        expect.objectContaining({
          from: 'releasing',
          to: 'released',
          details: {
            transaction_hash: payment.transaction_hash,
            released_amount: '0.00040000',
            refunded_amount: '0.00060000',
          },
        }),
      ]);

      // The signed receipt carries both amounts and both addresses, and verifies.
      const receipt = (await t.http.get(`/v1/payments/${job.payment_id}/receipt`).set('X-Api-Key', t.keys.client)).body;
      expect(receipt).toMatchObject({
        status: 'released',
        amount: '0.00100000',
        released_amount: '0.00040000',
        refunded_amount: '0.00060000',
        payee_address: payout,
        refund_address: job.refundAddress,
        transaction_hash: payment.transaction_hash,
        verified: true,
      });
      const { keys } = (await t.http.get('/v1/receipts/keys')).body;
      const key = keys.find((k: Body) => k.key_id === receipt.signature.key_id);
      expect(verifyReceipt(receipt, key.public_key_pem)).toBe(true);
      expect(verifyReceipt({ ...receipt, released_amount: '0.00100000' }, key.public_key_pem)).toBe(false);

      // The miner's payouts and the export say what the miner got, and what went back.
      const payouts = (await t.http.get('/v1/miners/me/payouts').set('X-Api-Key', t.keys.miner)).body.items;
      expect(payouts.find((p: Body) => p.payment_id === job.payment_id)).toMatchObject({ amount: '0.00040000' });
      const exported = await t.http
        .get(`/v1/payments/export?format=ndjson&job_id=${job.job_id}`)
        .set('X-Api-Key', t.keys.client)
        .buffer(true);
      const lines = String(exported.text)
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      expect(lines).toEqual([
        expect.objectContaining({
          payment_id: job.payment_id,
          released_amount: '0.00040000',
          refunded_amount: '0.00060000',
        }),
      ]);

      // A second release of the settled payment moves nothing.
      const again = await post('admin', `/v1/payments/${job.payment_id}/release`, { amount: '0.0001' });
      expect(again.body.code).toBe('PAYMENT_ALREADY_SETTLED');
      expect((await balance(job.refundAddress)).toFixed(8)).toBe('0.00060000');
    });

    it('without `amount` a release is exactly as before: all to the miner, no refund leg, no amounts in the events', async () => {
      const job = await runningJob('0.0007');
      const response = await post('client', `/v1/payments/${job.payment_id}/release`, {});
      expect(response.body).toMatchObject({
        status: 'released',
        released_amount: '0.00070000',
        refunded_amount: '0.00000000',
      });
      expect((await balance(job.refundAddress)).isZero()).toBe(true);
      const transfers = await t.daemon.escrowTransfers(response.body.escrow_id);
      expect(transfers[1].credits).toEqual([{ address: payout, amount: '0.00070000' }]);
      const events = await eventsOf(job.payment_id);
      expect(events[2].details).toBeNull();
      expect(events[3].details).toEqual({ transaction_hash: response.body.transaction_hash });
      const receipt = (await t.http.get(`/v1/payments/${job.payment_id}/receipt`).set('X-Api-Key', t.keys.client)).body;
      expect(receipt).toMatchObject({
        released_amount: '0.00070000',
        refunded_amount: '0.00000000',
        refund_address: null,
      });
    });

    it('a batch release item with `amount` settles partially, next to a whole release, each exactly', async () => {
      const [partial, whole] = [await runningJob('0.002'), await runningJob('0.0005')];
      const payoutBefore = await balance(payout);
      const response = await post('client', '/v1/payments/batch', {
        items: [
          { payment_id: partial.payment_id, action: 'release', amount: '0.00123456' },
          { payment_id: whole.payment_id, action: 'release' },
        ],
      });
      expect(response.status).toBe(200);
      expect(
        response.body.items.map((i: Body) => [i.status_code, i.payment?.released_amount, i.payment?.refunded_amount]),
      ).toEqual([
        [200, '0.00123456', '0.00076544'],
        [200, '0.00050000', '0.00000000'],
      ]);
      expect((await balance(payout)).minus(payoutBefore).toFixed(8)).toBe('0.00173456');
      expect((await balance(partial.refundAddress)).toFixed(8)).toBe('0.00076544');
      expect((await balance(whole.refundAddress)).isZero()).toBe(true);
    });

    it('bad amounts are a 400 with nothing written, single or in a batch; a refund still settles whole', async () => {
      const job = await runningJob('0.001');
      const eventsBefore = (await eventsOf(job.payment_id)).length;
      const bad: unknown[] = [
        '0',
        '0.00000000',
        '-0.0001',
        '0.0010001',
        '0.000000001',
        '1e-4',
        ' 0.0004',
        'all',
        0.0004,
        null,
      ];
      for (const amount of bad) {
        const single = await post('client', `/v1/payments/${job.payment_id}/release`, { amount });
        expect([amount, single.status, single.body.code]).toEqual([amount, 400, 'VALIDATION_FAILED']);
      }
      const batch = await post('client', '/v1/payments/batch', {
        items: bad.map((amount, i) => ({ payment_id: job.payment_id, action: 'release', amount, reason: `try ${i}` })),
      });
      // A repeated payment_id is refused as a whole envelope; one item per request instead.
      expect(batch.status).toBe(400);
      for (const amount of ['0', '0.0011', '0.000000001']) {
        const one = await post('client', '/v1/payments/batch', {
          items: [{ payment_id: job.payment_id, action: 'release', amount }],
        });
        expect([amount, one.status, one.body.items[0].status_code, one.body.items[0].error.code]).toEqual([
          amount,
          200,
          400,
          'VALIDATION_FAILED',
        ]);
      }
      // A partial refund does not exist: a refund returns the whole payment.
      const partialRefund = await post('admin', `/v1/payments/${job.payment_id}/refund`, { amount: '0.0004' });
      expect([partialRefund.status, partialRefund.body.code]).toEqual([400, 'VALIDATION_FAILED']);

      await expect(getPayment(t.http, t.keys.client, job.payment_id)).resolves.toMatchObject({ status: 'escrowed' });
      expect(await eventsOf(job.payment_id)).toHaveLength(eventsBefore);
      const [row] = await query(t.databaseUrl, `SELECT released_amount FROM job_payments WHERE payment_id = $1`, [
        job.payment_id,
      ]);
      expect(row.released_amount).toBeNull();
      // The amount equal to the whole payment is a whole release.
      const whole = await post('client', `/v1/payments/${job.payment_id}/release`, { amount: '0.001' });
      expect(whole.body).toMatchObject({
        status: 'released',
        released_amount: '0.00100000',
        refunded_amount: '0.00000000',
      });
      expect((await balance(job.refundAddress)).isZero()).toBe(true);
    });

    it('the database refuses a released amount outside 0 < released ≤ amount', async () => {
      const job = await runningJob('0.001');
      for (const amount of ['0.0011', '0', '-0.0001']) {
        await expect(
          query(t.databaseUrl, `UPDATE job_payments SET released_amount = $2 WHERE payment_id = $1`, [
            job.payment_id,
            amount,
          ]),
        ).rejects.toThrow(/job_payments_released_amount/);
      }
      // …and one on a payment that is not being released.
      await expect(
        query(t.databaseUrl, `UPDATE job_payments SET released_amount = '0.0005' WHERE payment_id = $1`, [
          job.payment_id,
        ]),
      ).rejects.toThrow(/job_payments_released_amount_only_on_release/);
    });

    it('racing a whole release, a refund and the expiry sweep, exactly one settlement happens, paid exactly', async () => {
      const jobs = t.app.get(JobsService);
      for (let round = 0; round < 4; round++) {
        const job = await runningJob('0.001');
        const payoutBefore = await balance(payout);
        await moveDeadline(t.databaseUrl, job.job_id, -1_000, { escrow: true });
        const [partial, whole, refund] = await Promise.all([
          post('client', `/v1/payments/${job.payment_id}/release`, { amount: '0.0003' }),
          post('admin', `/v1/payments/${job.payment_id}/release`, {}),
          post('admin', `/v1/payments/${job.payment_id}/refund`, {}),
          jobs.expireDue(),
        ]);
        const answers = [partial, whole, refund];
        const winners = answers.filter((a) => a.status === 200);
        expect(winners.length).toBeLessThanOrEqual(1);
        for (const loser of answers.filter((a) => a.status !== 200)) {
          expect([loser.status, loser.body.code]).toEqual([409, 'PAYMENT_ALREADY_SETTLED']);
        }

        const payment = await getPayment(t.http, t.keys.client, job.payment_id);
        expect(['released', 'refunded']).toContain(payment.status);
        const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
        expect(transfers).toHaveLength(2);
        const toMiner = (await balance(payout)).minus(payoutBefore);
        const toClient = await balance(job.refundAddress);
        expect(toMiner.plus(toClient).toFixed(8)).toBe('0.00100000');
        expect(toMiner.toFixed(8)).toBe(payment.released_amount);
        expect(toClient.toFixed(8)).toBe(payment.refunded_amount);
        if (partial.status === 200) expect(payment.released_amount).toBe('0.00030000');
        if (whole.status === 200) expect(payment.released_amount).toBe('0.00100000');
        if (refund.status === 200 || winners.length === 0) expect(payment.status).toBe('refunded');
      }
    });
  });

  describe('extension', () => {
    const extend = (key: keyof TestApp['keys'], jobId: string, body: unknown) =>
      post(key, `/v1/jobs/${jobId}/extend`, body);

    it("moves the job's deadline and its escrow's expiry by exactly `seconds`, at the daemon too, with an event", async () => {
      const job = await createPaidJob(t.http, t.keys.client, { ttl_seconds: 900, escrow_timeout_seconds: 3600 });
      const before = await getPayment(t.http, t.keys.client, job.payment_id);

      const response = await extend('client', job.job_id, { seconds: 1800 });
      expect(response.status).toBe(200);
      expect(response.body.job).toMatchObject({
        job_id: job.job_id,
        state: 'queued',
        expires_at: plus(job.expires_at, 1800),
      });
      expect(response.body.payment).toMatchObject({ status: 'escrowed', expires_at: plus(before.expires_at, 1800) });
      await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({
        expires_at: plus(job.expires_at, 1800),
      });

      const events = await eventsOf(job.payment_id);
      expect(events[events.length - 1]).toMatchObject({
        from: 'escrowed',
        to: 'escrowed',
        reason: 'escrow_extended',
        actor: t.principals.client,
        details: { expires_at: plus(before.expires_at, 1800), seconds: 1800 },
      });
      // The daemon has the new expiry, and nothing is left owed to it.
      expect((await daemonEscrow(t.daemon, before.escrow_id)).expires_at).toBe(plus(before.expires_at, 1800));
      const [row] = await query(t.databaseUrl, `SELECT next_attempt_at FROM job_payments WHERE payment_id = $1`, [
        job.payment_id,
      ]);
      expect(row.next_attempt_at).toBeNull();

      // An admin may extend any job; an unpaid job has only its deadline.
      const again = await extend('admin', job.job_id, { seconds: 60 });
      expect(again.body.payment.expires_at).toBe(plus(before.expires_at, 1860));
      const unpaid = await post('client', '/v1/jobs', { payload: { job_type: 'ai_inference' }, ttl_seconds: 600 });
      const unpaidExtended = await extend('client', unpaid.body.job_id, { seconds: 600 });
      expect(unpaidExtended.status).toBe(200);
      expect(unpaidExtended.body).toEqual({
        job: expect.objectContaining({ expires_at: plus(unpaid.body.expires_at, 600) }),
        payment: null,
      });
    });

    it('the expiry sweep honours the new deadline: the escrow stays held until then, then is refunded', async () => {
      const jobs = t.app.get(JobsService);
      const extended = await runningJob('0.0009');
      const control = await runningJob('0.0008');
      // Both deadlines one minute away (the escrow's too), then the one job gets two more minutes.
      for (const job of [extended, control]) await moveDeadline(t.databaseUrl, job.job_id, 60_000, { escrow: true });
      expect((await extend('client', extended.job_id, { seconds: 120 })).status).toBe(200);

      // 100 s pass: the control's deadline is behind it, the extended one 80 s ahead.
      await advanceTime(t.databaseUrl, [extended.job_id, control.job_id], 100);
      await jobs.expireDue();
      await expect(getPayment(t.http, t.keys.client, control.payment_id)).resolves.toMatchObject({
        status: 'refunded',
        settle_reason: 'escrow_expired',
      });
      await expect(getPayment(t.http, t.keys.client, extended.payment_id)).resolves.toMatchObject({
        status: 'escrowed',
      });
      await expect(getJob(t.http, t.keys.client, extended.job_id)).resolves.toMatchObject({ state: 'running' });

      // 90 s more: now the extended deadline has passed too.
      await advanceTime(t.databaseUrl, [extended.job_id], 90);
      await jobs.expireDue();
      await expect(getPayment(t.http, t.keys.client, extended.payment_id)).resolves.toMatchObject({
        status: 'refunded',
        settle_reason: 'escrow_expired',
      });
      await expect(getJob(t.http, t.keys.client, extended.job_id)).resolves.toMatchObject({ state: 'expired' });
      expect((await balance(extended.refundAddress)).toFixed(8)).toBe('0.00090000');
    });

    it('is refused: 409 once the job is final, past its deadline, or its payment is not escrowed; nothing moves', async () => {
      const canceled = await createPaidJob(t.http, t.keys.client);
      expect((await post('client', `/v1/jobs/${canceled.job_id}/cancel`)).status).toBe(200);
      const final = await extend('client', canceled.job_id, { seconds: 60 });
      expect([final.status, final.body.code, final.body.details.state]).toEqual([
        409,
        'INVALID_JOB_TRANSITION',
        'canceled',
      ]);

      // The miner's job is still running, but its payment was released: nothing to extend.
      const released = await runningJob('0.0002');
      expect((await post('client', `/v1/payments/${released.payment_id}/release`)).status).toBe(200);
      const notEscrowed = await extend('client', released.job_id, { seconds: 60 });
      expect([notEscrowed.status, notEscrowed.body.code, notEscrowed.body.details.status]).toEqual([
        409,
        'PAYMENT_NOT_ESCROWED',
        'released',
      ]);
      await expect(getJob(t.http, t.keys.client, released.job_id)).resolves.toMatchObject({
        state: 'running',
        expires_at: released.expires_at,
      });

      // Past its deadline, before the sweep: over already (a result would be refused too).
      const late = await createPaidJob(t.http, t.keys.client);
      await moveDeadline(t.databaseUrl, late.job_id, -1_000, { escrow: true });
      const pastDeadline = await extend('client', late.job_id, { seconds: 600 });
      expect([pastDeadline.status, pastDeadline.body.code]).toEqual([409, 'JOB_EXPIRED']);
      expect((await eventsOf(late.payment_id)).map((e: Body) => e.reason)).not.toContain('escrow_extended');
    });

    it('is refused: 400 beyond JOB_TTL_MAX_SECONDS or ESCROW_MAX_TIMEOUT_SECONDS from the start, or for a bad `seconds`', async () => {
      // The escrow (3600 s of 7200) runs out of room first: 3600 s more at most.
      const job = await createPaidJob(t.http, t.keys.client, { ttl_seconds: 900, escrow_timeout_seconds: 3600 });
      const before = await getPayment(t.http, t.keys.client, job.payment_id);
      const tooFar = await extend('client', job.job_id, { seconds: 4000 });
      expect([tooFar.status, tooFar.body.code, tooFar.body.details.limit]).toEqual([
        400,
        'EXTENSION_OUT_OF_RANGE',
        'ESCROW_MAX_TIMEOUT_SECONDS',
      ]);
      expect(tooFar.body.details.max_seconds).toBeLessThanOrEqual(3600);
      expect(tooFar.body.details.max_seconds).toBeGreaterThan(3500);

      // An unpaid job is bounded by its TTL maximum (a day from its request).
      const unpaid = await post('client', '/v1/jobs', { payload: { job_type: 'ai_inference' }, ttl_seconds: 600 });
      const tooLong = await extend('client', unpaid.body.job_id, { seconds: 86_000 });
      expect([tooLong.status, tooLong.body.code, tooLong.body.details.limit]).toEqual([
        400,
        'EXTENSION_OUT_OF_RANGE',
        'JOB_TTL_MAX_SECONDS',
      ]);
      expect((await extend('client', unpaid.body.job_id, { seconds: 85_800 })).status).toBe(200);

      for (const seconds of [0, -5, 1.5, '60', null, 400 * 86_400]) {
        const bad = await extend('client', job.job_id, { seconds });
        expect([seconds, bad.status, bad.body.code]).toEqual([seconds, 400, 'VALIDATION_FAILED']);
      }
      expect((await extend('client', job.job_id, {})).status).toBe(400);
      await expect(getPayment(t.http, t.keys.client, job.payment_id)).resolves.toMatchObject({
        status: 'escrowed',
        expires_at: before.expires_at,
      });
    });

    it("is 404 for another client's or an unknown job, 403 for a miner", async () => {
      const job = await createPaidJob(t.http, t.keys.client);
      for (const [key, path, status, code] of [
        ['client2', job.job_id, 404, 'JOB_NOT_FOUND'],
        ['client', '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c', 404, 'JOB_NOT_FOUND'],
        ['client', 'not-a-job', 404, 'JOB_NOT_FOUND'],
        ['miner', job.job_id, 403, 'FORBIDDEN'],
      ] as const) {
        const response = await extend(key, path, { seconds: 60 });
        expect([key, path, response.status, response.body.code]).toEqual([key, path, status, code]);
      }
      await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ expires_at: job.expires_at });
    });
  });

  describe('partial release webhook', () => {
    let w: TestApp;
    let receiver: WebhookReceiver;

    beforeAll(async () => {
      w = await startTestApp({
        ...LIMITS,
        WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
        WEBHOOK_POLL_INTERVAL_MS: '50',
        WEBHOOK_RETRY_SCHEDULE: '1,1,1',
      });
      receiver = await WebhookReceiver.start();
    });

    afterAll(async () => {
      await receiver?.close();
      await w?.close();
    });

    it('payment.released carries both amounts, as exact strings, as the payment reads', async () => {
      const minerPayout = await w.daemon.newAddress();
      await registerMiner(w.http, w.keys.miner, minerPayout);
      const endpoint = await w.http
        .post('/v1/webhook-endpoints')
        .set('X-Api-Key', w.keys.client)
        .send({ url: receiver.url, event_types: ['payment.released'] });
      expect(endpoint.status).toBe(201);
      receiver.secrets = [endpoint.body.secret];
      const job = await createPaidJob(w.http, w.keys.client, { amount: '0.00123457' });
      await claimJob(w.http, w.keys.miner, job.job_id);
      const released = await w.http
        .post(`/v1/payments/${job.payment_id}/release`)
        .set('X-Api-Key', w.keys.client)
        .send({ amount: '0.00000001' });
      expect(released.body).toMatchObject({ released_amount: '0.00000001', refunded_amount: '0.00123456' });

      const webhook = await receiver.waitFor('payment.released', job.payment_id);
      expect(webhook.verifiedBy).toEqual([0]);
      expect(webhook.body.data.payment).toEqual(await getPayment(w.http, w.keys.client, job.payment_id));
      await w.daemon.expectLedgerConserved();
    });
  });

  describe('extension while the daemon is down (private daemon)', () => {
    let priv: PrivateDaemon;
    let d: TestApp;

    beforeAll(async () => {
      priv = await startPrivateDaemon();
      d = await startTestApp({ ...LIMITS, WALLET_DAEMON_RETRIES: '0' }, { daemon: priv.daemon });
    });

    afterAll(async () => {
      await d?.close();
      await priv?.stop();
    });

    it('answers 503 with the extension recorded and in force; the re-drive gives the daemon the new expiry', async () => {
      const job = await createPaidJob(d.http, d.keys.client, { escrow_timeout_seconds: 3600 });
      const before = await getPayment(d.http, d.keys.client, job.payment_id);
      await priv.daemon.setFaults({ fail_rate: 1 });
      const key = `extend-${job.job_id}`;
      const send = () =>
        d.http
          .post(`/v1/jobs/${job.job_id}/extend`)
          .set('X-Api-Key', d.keys.client)
          .set('Idempotency-Key', key)
          .send({ seconds: 600 });
      const response = await send();
      expect([response.status, response.body.code, response.body.details.extended]).toEqual([
        503,
        'WALLET_DAEMON_UNAVAILABLE',
        true,
      ]);
      const expiresAt = plus(before.expires_at, 600);
      expect(response.body.details.expires_at).toBe(expiresAt);
      // Recorded and in force: the coordinator's deadline is the one the sweep reads.
      await expect(getPayment(d.http, d.keys.client, job.payment_id)).resolves.toMatchObject({ expires_at: expiresAt });

      // A retry with the same Idempotency-Key resumes it: no second extension.
      const retried = await send();
      expect(retried.status).toBe(503);
      await expect(getPayment(d.http, d.keys.client, job.payment_id)).resolves.toMatchObject({ expires_at: expiresAt });

      await priv.daemon.resetFaults();
      await waitFor('the re-drive to confirm the extension', async () => {
        await d.app.get(PaymentsService).redriveDue();
        const [row] = await query(d.databaseUrl, `SELECT next_attempt_at FROM job_payments WHERE payment_id = $1`, [
          job.payment_id,
        ]);
        return row.next_attempt_at === null;
      });
      expect((await daemonEscrow(priv.daemon, before.escrow_id)).expires_at).toBe(expiresAt);
      const events = await paymentEvents(d.http, d.keys.client, job.payment_id);
      expect(events.filter((e: Body) => e.reason === 'escrow_extended')).toHaveLength(1);

      // And the retry now answers 200 with the extended job, still extended once.
      const done = await send();
      expect(done.status).toBe(200);
      expect(done.body.payment.expires_at).toBe(expiresAt);
      await priv.daemon.expectLedgerConserved();
    });

    it('a payment left releasing (its partial release not confirmed yet) cannot be extended; the re-drive settles it exactly', async () => {
      const minerPayout = await priv.daemon.newAddress();
      await registerMiner(d.http, d.keys.miner, minerPayout);
      const refundAddress = await priv.daemon.newAddress();
      const job = await createPaidJob(d.http, d.keys.client, { amount: '0.001', refund_address: refundAddress });
      await claimJob(d.http, d.keys.miner, job.job_id);
      await priv.daemon.setFaults({ fail_rate: 1 });
      const release = await d.http
        .post(`/v1/payments/${job.payment_id}/release`)
        .set('X-Api-Key', d.keys.client)
        .send({ amount: '0.00025' });
      expect(release.body).toMatchObject({ status: 'releasing', released_amount: null, refunded_amount: null });

      const refused = await d.http
        .post(`/v1/jobs/${job.job_id}/extend`)
        .set('X-Api-Key', d.keys.client)
        .send({ seconds: 60 });
      expect([refused.status, refused.body.code, refused.body.details.status]).toEqual([
        409,
        'PAYMENT_NOT_ESCROWED',
        'releasing',
      ]);

      // The recorded decision is what the re-drive carries out: 0.00025 to the miner, the rest back.
      await priv.daemon.resetFaults();
      const settled = await waitFor('the re-drive to settle the partial release', async () => {
        await d.app.get(PaymentsService).redriveDue();
        const payment = await getPayment(d.http, d.keys.client, job.payment_id);
        return payment.status === 'released' && payment;
      });
      expect(settled).toMatchObject({ released_amount: '0.00025000', refunded_amount: '0.00075000' });
      expect(await priv.daemon.balance(minerPayout)).toBe('0.00025000');
      expect(await priv.daemon.balance(refundAddress)).toBe('0.00075000');
      await priv.daemon.expectLedgerConserved();
    });
  });
});
