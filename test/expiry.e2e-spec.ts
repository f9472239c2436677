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
import { moveDeadline, moveDeadlines, waitForDatabaseTime } from './support/deadlines';

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
    const toRefundAddress = await createPaidJob(t.http, t.keys.client, {
      amount: '0.0007',
      escrow_timeout_seconds: 2,
      refund_address: refundElsewhere,
    });
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
      await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({
        state: 'expired',
        payment_status: 'refunded',
      });

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
    await expect(
      metricValue(t.http, 'payment_status_transitions_total', { from: 'escrowed', to: 'refunding' }),
    ).resolves.toBeGreaterThanOrEqual(2);
    await expect(
      metricValue(t.http, 'payment_status_transitions_total', { from: 'refunding', to: 'refunded' }),
    ).resolves.toBeGreaterThanOrEqual(2);
  });

  it('a result committed before the deadline is released, and the expiry sweep after the deadline does not refund it', async () => {
    const payoutBefore = new Money(await t.daemon.balance(payout));
    const created = await createPaidJob(t.http, t.keys.client, { amount: '0.0011', escrow_timeout_seconds: 3600 });
    const job = await pollJob(t.http, t.keys.miner);
    expect(job.job_id).toBe(created.job_id);

    // The deadline is ahead (on the database's clock) when the result commits…
    await moveDeadline(t.databaseUrl, job.job_id, 60_000, { escrow: true });
    const result = await t.http
      .post(`/v1/miners/jobs/${job.job_id}/result`)
      .set('X-Api-Key', t.keys.miner)
      .send({ result: { text: 'done' } });
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ state: 'completed', payment_status: 'released' });

    // …and behind when the sweep runs.
    await moveDeadline(t.databaseUrl, job.job_id, -1_000, { escrow: true });
    await expireDue();

    const payment = await getPayment(t.http, t.keys.client, job.payment_id);
    expect(payment).toMatchObject({ status: 'released', refund_transaction_hash: null, payee_address: payout });
    await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({
      state: 'completed',
      payment_status: 'released',
    });
    expect(kinds(await t.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'release']);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore.plus('0.0011'))).toBe(true);
    const events = await paymentEvents(t.http, t.keys.client, job.payment_id);
    expect(events.some((e: { to: string }) => e.to === 'refunding')).toBe(false);
  });

  it('a result arriving after the deadline, before any sweep, is refused with 409 and the escrow is refunded', async () => {
    const clientBefore = new Money(await t.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await t.daemon.balance(payout));
    const created = await createPaidJob(t.http, t.keys.client, { amount: '0.0013', escrow_timeout_seconds: 3600 });
    const job = await pollJob(t.http, t.keys.miner);
    expect(job.job_id).toBe(created.job_id);

    // The escrow's expiry (and with it the job's deadline) passes while the job runs.
    await moveDeadline(t.databaseUrl, job.job_id, -1_000, { escrow: true });
    // Past the deadline but before any sweep ran: the job is still `running`, the result is refused anyway.
    await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ state: 'running' });
    const late = await t.http
      .post(`/v1/miners/jobs/${job.job_id}/result`)
      .set('X-Api-Key', t.keys.miner)
      .send({ result: { text: 'late' } });
    expect(late.status).toBe(409);
    expect(late.body.code).toBe('JOB_EXPIRED');

    await expireDue();
    await expect(getPayment(t.http, t.keys.client, job.payment_id)).resolves.toMatchObject({
      status: 'refunded',
      settle_reason: 'escrow_expired',
      transaction_hash: null,
    });
    await expect(getJob(t.http, t.keys.client, job.job_id)).resolves.toMatchObject({ state: 'expired', result: null });

    // After the sweep, still 409 and still nothing paid.
    const later = await t.http
      .post(`/v1/miners/jobs/${job.job_id}/result`)
      .set('X-Api-Key', t.keys.miner)
      .send({ result: { text: 'later' } });
    expect(later.status).toBe(409);
    expect(later.body.code).toBe('INVALID_JOB_TRANSITION');

    const payment = await getPayment(t.http, t.keys.client, job.payment_id);
    expect(kinds(await t.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'refund']);
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore)).toBe(true);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore)).toBe(true);
  });

  it('results and expiry sweeps racing on 30 jobs with deadlines spread around the moment they fire: each job is completed+released or expired+refunded, never both', async () => {
    const runs = 30;
    const clearlyPast = 4;
    const clearlyAhead = 4;
    const amount = '0.00101';
    // Results and sweeps lock the same jobs at once; the lock order means PostgreSQL never aborts one for a deadlock.
    const abortsBefore = await metricValue(t.http, 'db_transaction_aborts_total');
    const clientBefore = new Money(await t.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await t.daemon.balance(payout));

    // Every job is created and dispatched first, with time to spare: how long that takes does not matter.
    const jobs: { job_id: string; payment_id: string }[] = [];
    for (let i = 0; i < runs; i++) {
      const created = await createPaidJob(t.http, t.keys.client, { amount, escrow_timeout_seconds: 3600 });
      const job = await pollJob(t.http, t.keys.miner);
      expect(job.job_id).toBe(created.job_id);
      jobs.push(job);
    }
    // Then the escrows' expiries, on the database's clock, relative to the moment everything fires (1 s from now):
    // the first few long past (the sweep must win), the last few far ahead (the result must win), and the rest
    // spread over the 1.5 s after firing, while results and sweeps are still arriving (either may win, never both).
    const fireIn = 1_000;
    const offsets = jobs.map((_, i) =>
      i < clearlyPast
        ? -3_600_000
        : i >= runs - clearlyAhead
          ? 3_600_000
          : fireIn + Math.round((1_500 * (i - clearlyPast)) / (runs - clearlyPast - clearlyAhead - 1)),
    );
    const deadlines = await moveDeadlines(
      t.databaseUrl,
      jobs.map((j) => j.job_id),
      offsets,
      { escrow: true },
    );
    await waitForDatabaseTime(t.databaseUrl, deadlines[clearlyPast]);

    // All results at once, and expiry sweeps back to back until every result has its answer.
    let answered = false;
    const sweeping = (async () => {
      let sweeps = 0;
      while (!answered || sweeps === 0) {
        await expireDue();
        sweeps++;
      }
    })();
    const outcomes = await Promise.all(
      jobs.map(async (job, i) => {
        const result = await t.http
          .post(`/v1/miners/jobs/${job.job_id}/result`)
          .set('X-Api-Key', t.keys.miner)
          .send({ result: { i } });
        return {
          jobId: job.job_id,
          paymentId: job.payment_id,
          status: result.status,
          code: result.body.code as string | undefined,
        };
      }),
    ).finally(() => {
      answered = true;
    });
    await sweeping;
    // A refused result means the deadline had passed, so a last sweep leaves no job of these live.
    await expireDue();

    let released = 0;
    for (const outcome of outcomes) {
      const job = await getJob(t.http, t.keys.client, outcome.jobId);
      const payment = await getPayment(t.http, t.keys.client, outcome.paymentId);
      const transfers = kinds(await t.daemon.escrowTransfers(payment.escrow_id));
      const events = await paymentEvents(t.http, t.keys.client, outcome.paymentId);
      const decisions = events.filter((e: { from: string }) => e.from === 'escrowed').map((e: { to: string }) => e.to);
      const seen = {
        result: outcome.status,
        code: outcome.code,
        job: job.state,
        payment: payment.status,
        transfers,
        decisions,
      };
      if (outcome.status === 200) {
        released++;
        expect(seen).toEqual({
          result: 200,
          code: undefined,
          job: 'completed',
          payment: 'released',
          transfers: ['create', 'release'],
          decisions: ['releasing'],
        });
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
    // Both sides of the race really happened: long past deadlines always lose the result, far ones always keep it.
    expect(outcomes.slice(0, clearlyPast).map((o) => o.status)).toEqual(Array(clearlyPast).fill(409));
    expect(outcomes.slice(runs - clearlyAhead).map((o) => o.status)).toEqual(Array(clearlyAhead).fill(200));

    const paid = new Money(amount).times(released);
    expect(new Money(await t.daemon.balance(payout)).eq(payoutBefore.plus(paid))).toBe(true);
    expect(new Money(await t.daemon.balance(t.clientWallet)).eq(clientBefore.minus(paid))).toBe(true);
    expect(await metricValue(t.http, 'db_transaction_aborts_total')).toBe(abortsBefore);
  });
});
