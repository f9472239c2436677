import { Money } from '../src/common/money';
import { JobsService } from '../src/jobs/jobs.service';
import { startTestApp, TestApp } from './support/app';
import {
  createPaidJob,
  getJob,
  getPayment,
  kinds,
  metricValue,
  paymentEvents,
  pollJob,
  registerMiner,
  sleepUntil,
} from './support/flow';

// Escrow expiry: a payment still escrowed past its expires_at is refunded (reason
// escrow_expired), and a miner's result racing the expiry sweep wins or loses
// cleanly — never both. Real PostgreSQL, the real wallet daemon, HTTP.
describe('escrow expiry', () => {
  let t: TestApp;
  let payout: string;

  beforeAll(async () => {
    t = await startTestApp();
    payout = await t.daemon.newAddress();
    await registerMiner(t.http, t.keys.miner, payout);
  });

  afterEach(async () => {
    await t.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await t?.close();
  });

  const expireDue = () => t.app.get(JobsService).expireDue();

  it('refunds an escrow held past its 2-second timeout to the refund address, with reason escrow_expired, an event and metrics', async () => {
    const clientBefore = new Money(await t.daemon.balance(t.clientWallet));
    const refundElsewhere = await t.daemon.newAddress();

    const byDefault = await createPaidJob(t.http, t.keys.client, { amount: '0.0012', escrow_timeout_seconds: 2 });
    const toRefundAddress = await createPaidJob(t.http, t.keys.client, { amount: '0.0007', escrow_timeout_seconds: 2, refund_address: refundElsewhere });
    expect(byDefault.payment_status).toBe('escrowed');
    expect(toRefundAddress.payment_status).toBe('escrowed');
    // The job's deadline is pulled in to the escrow's expiry.
    expect(Date.parse(byDefault.expires_at) - Date.parse(byDefault.requested_at)).toBeLessThanOrEqual(2_000);
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore.minus('0.0019'))).toBe(true);

    await sleepUntil(Date.parse(toRefundAddress.expires_at) + 200);
    await expect(expireDue()).resolves.toBeGreaterThanOrEqual(2);

    for (const job of [byDefault, toRefundAddress]) {
      const payment = await getPayment(t.http, t.keys.client, job.payment_id);
      expect(payment).toMatchObject({ status: 'refunded', settle_reason: 'escrow_expired', transaction_hash: null });
      expect(payment.refund_transaction_hash).toEqual(expect.any(String));
      expect(payment.refunded_at).toEqual(expect.any(String));
      await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ state: 'expired', payment_status: 'refunded' });

      const events = await paymentEvents(t.http, t.keys.client, job.payment_id);
      expect(events.map((e: { from: string | null; to: string }) => `${e.from}->${e.to}`)).toEqual([
        'null->pending',
        'pending->escrowed',
        'escrowed->refunding',
        'refunding->refunded',
      ]);
      expect(events[2]).toMatchObject({ from: 'escrowed', to: 'refunding', reason: 'escrow_expired', actor: 'system' });

      // At the daemon: one hold and one refund of this escrow, to the refund address.
      const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
      expect(kinds(transfers)).toEqual(['create', 'refund']);
      const refund = transfers.find((x) => x.kind === 'refund')!;
      expect(refund.to).toBe(payment.refund_address);
      expect(new Money(refund.amount).eq(payment.amount)).toBe(true);
      expect(refund.transaction_hash).toBe(payment.refund_transaction_hash);
    }

    // The daemon's balances prove it: the payer got back what was refunded to it, the other refund address the rest.
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore.minus('0.0007'))).toBe(true);
    expect(new Money(await t.daemon.balance(refundElsewhere)).eq('0.0007')).toBe(true);

    await expect(metricValue(t.http, 'escrows_expired_total')).resolves.toBeGreaterThanOrEqual(2);
    await expect(metricValue(t.http, 'payment_status_transitions_total', { from: 'escrowed', to: 'refunding' })).resolves.toBeGreaterThanOrEqual(2);
    await expect(metricValue(t.http, 'payment_status_transitions_total', { from: 'refunding', to: 'refunded' })).resolves.toBeGreaterThanOrEqual(2);
  });

  it('a result committed just before the expiry sweep is released, not refunded', async () => {
    const payoutBefore = new Money(await t.daemon.balance(payout));
    const created = await createPaidJob(t.http, t.keys.client, { amount: '0.0011', escrow_timeout_seconds: 2 });
    const job = await pollJob(t.http, t.keys.miner);
    expect(job.job_id).toBe(created.job_id);
    const deadline = Date.parse(job.expires_at);

    await sleepUntil(deadline - 300);
    const result = await t.http.post(`/v1/miners/jobs/${job.job_id}/result`).set('X-Api-Key', t.keys.miner).send({ result: { text: 'done' } });
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ state: 'completed', payment_status: 'released' });

    await sleepUntil(deadline + 150);
    await expireDue();

    const payment = await getPayment(t.http, t.keys.client, job.payment_id);
    expect(payment).toMatchObject({ status: 'released', refund_transaction_hash: null, payee_address: payout });
    await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ state: 'completed', payment_status: 'released' });
    expect(kinds(await t.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'release']);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore.plus('0.0011'))).toBe(true);
    const events = await paymentEvents(t.http, t.keys.client, job.payment_id);
    expect(events.some((e: { to: string }) => e.to === 'refunding')).toBe(false);
  });

  it('a result arriving just after the deadline is refused with 409 and the escrow is refunded', async () => {
    const clientBefore = new Money(await t.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await t.daemon.balance(payout));
    const created = await createPaidJob(t.http, t.keys.client, { amount: '0.0013', escrow_timeout_seconds: 2 });
    const job = await pollJob(t.http, t.keys.miner);
    expect(job.job_id).toBe(created.job_id);

    // Past the deadline but before any sweep ran: the job is still `running`, the result is refused anyway.
    await sleepUntil(Date.parse(job.expires_at) + 150);
    const late = await t.http.post(`/v1/miners/jobs/${job.job_id}/result`).set('X-Api-Key', t.keys.miner).send({ result: { text: 'late' } });
    expect(late.status).toBe(409);
    expect(late.body.code).toBe('JOB_EXPIRED');

    await expireDue();
    await expect(getPayment(t.http, t.keys.client, job.payment_id)).resolves.toMatchObject({ status: 'refunded', settle_reason: 'escrow_expired', transaction_hash: null });
    await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ state: 'expired', result: null });

    // After the sweep, still 409 and still nothing paid.
    const later = await t.http.post(`/v1/miners/jobs/${job.job_id}/result`).set('X-Api-Key', t.keys.miner).send({ result: { text: 'later' } });
    expect(later.status).toBe(409);
    expect(later.body.code).toBe('INVALID_JOB_TRANSITION');

    const payment = await getPayment(t.http, t.keys.client, job.payment_id);
    expect(kinds(await t.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'refund']);
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore)).toBe(true);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore)).toBe(true);
  });

  it('the result/expiry race, run 30 times around the deadline: each job is completed+released or expired+refunded, never both', async () => {
    const runs = 30;
    const amount = '0.00101';
    const clientBefore = new Money(await t.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await t.daemon.balance(payout));

    // Each job is created and dispatched, then its result and an expiry sweep are fired
    // together at its deadline plus an offset spread over ±120 ms; later jobs are still
    // being created while earlier ones race.
    const races: Promise<{ jobId: string; paymentId: string; status: number; code?: string }>[] = [];
    for (let i = 0; i < runs; i++) {
      const created = await createPaidJob(t.http, t.keys.client, { amount, escrow_timeout_seconds: 1 + (i % 2) });
      const job = await pollJob(t.http, t.keys.miner);
      expect(job.job_id).toBe(created.job_id);
      const offset = -120 + Math.round((240 * i) / (runs - 1));
      races.push(
        (async () => {
          await sleepUntil(Date.parse(job.expires_at) + offset);
          const [result] = await Promise.all([
            t.http.post(`/v1/miners/jobs/${job.job_id}/result`).set('X-Api-Key', t.keys.miner).send({ result: { i } }),
            expireDue(),
          ]);
          return { jobId: job.job_id, paymentId: job.payment_id, status: result.status, code: result.body.code };
        })(),
      );
    }
    const outcomes = await Promise.all(races);
    // Nothing can be left over; a last sweep must find no job of these still live.
    await expireDue();

    let released = 0;
    for (const outcome of outcomes) {
      const job = await getJob(t.http, t.keys.client, outcome.jobId);
      const payment = await getPayment(t.http, t.keys.client, outcome.paymentId);
      const transfers = kinds(await t.daemon.escrowTransfers(payment.escrow_id));
      const events = await paymentEvents(t.http, t.keys.client, outcome.paymentId);
      const decisions = events.filter((e: { from: string }) => e.from === 'escrowed').map((e: { to: string }) => e.to);
      const seen = { result: outcome.status, code: outcome.code, job: job.state, payment: payment.status, transfers, decisions };
      if (outcome.status === 200) {
        released++;
        expect(seen).toEqual({ result: 200, code: undefined, job: 'completed', payment: 'released', transfers: ['create', 'release'], decisions: ['releasing'] });
      } else {
        expect(seen).toEqual({
          result: 409,
          code: expect.stringMatching(/^(JOB_EXPIRED|INVALID_JOB_TRANSITION)$/),
          job: 'expired',
          payment: 'refunded',
          transfers: ['create', 'refund'],
          decisions: ['refunding'],
        });
      }
    }
    // Both sides of the race really happened.
    expect(released).toBeGreaterThan(0);
    expect(released).toBeLessThan(runs);

    const paid = new Money(amount).times(released);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore.plus(paid))).toBe(true);
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore.minus(paid))).toBe(true);
  });
});
