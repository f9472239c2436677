import { setTimeout as sleep } from 'node:timers/promises';
import type { Response } from 'supertest';
import { Transactions } from '../src/database/transactions';
import { JobsService } from '../src/jobs/jobs.service';
import type { TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { kinds, metricValue, query, waitFor } from './support/flow';
import { Api, Body, diff, expectStatus, PAYLOAD, startApp } from './support/payments';
import { withClient } from './support/postgres';

// The money rules README "How money moves", "Idempotency" and "Security" state that no
// other spec proves on its own: checked through the public routes, the coordinator's
// database and what the wallet daemon itself recorded (its ledger and its idempotency
// keys). A private daemon: some tests inject latency, which is daemon-wide.
describe('money rules (e2e)', () => {
  let pd: PrivateDaemon;
  let t: TestApp;
  let api: Api;

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    t = await startApp({}, { daemon: pd.daemon });
    api = new Api(t);
  });

  afterEach(async () => {
    await pd.daemon.resetFaults();
    // Every test starts with an empty queue, whatever the previous one left.
    await api.cancelLiveJobs();
    await pd.daemon.expectLedgerConserved('BTC');
    await pd.daemon.expectLedgerConserved('AITBC');
  });

  afterAll(async () => {
    await t?.close();
    await pd?.stop();
  });

  const expireDue = () => t.app.get(JobsService).expireDue();
  const aborts = () => metricValue(t.http, 'db_transaction_aborts_total');

  /** What the daemon stored per idempotency key it received for these payments (key → route). */
  async function daemonKeys(paymentIds: string[]): Promise<Record<string, string>> {
    const rows = await query<{ idempotency_key: string; route: string }>(
      pd.databaseUrl,
      `SELECT idempotency_key, route FROM wallet_daemon.idempotency_keys
        WHERE split_part(idempotency_key, ':', 1) = ANY($1::text[]) ORDER BY idempotency_key`,
      [paymentIds],
    );
    return Object.fromEntries(rows.map((r) => [r.idempotency_key, r.route]));
  }

  /** Waits until the database clock (not this process's) is past the jobs' deadlines. */
  async function waitUntilDue(jobIds: string[]): Promise<void> {
    await waitFor(
      `deadlines of ${jobIds.length} job(s) passed on the database clock`,
      async () => {
        const [{ due }] = await api.query<{ due: boolean }>(
          `SELECT bool_and(expires_at < now()) AS due FROM job WHERE job_id = ANY($1::uuid[])`,
          [jobIds],
        );
        return due;
      },
      30_000,
      100,
    );
  }

  describe('the shared settle key', () => {
    it('release and refund of an escrow reach the daemon with the same <payment_id>:settle key, on the single routes and in settle-batch', async () => {
      await api.registerFreshMiner('miner');
      const released = await api.paidJob('client');
      await api.pollFor(released.job_id);
      expectStatus(await api.result('miner', released.job_id), 200, 'result');

      const refundedByRoute = await api.paidJob('client');
      expectStatus(await api.refund('client', refundedByRoute.payment_id), 200, 'refund');
      const canceled = await api.paidJob('client');
      expectStatus(await api.cancel('client', canceled.job_id), 200, 'cancel');
      const failed = await api.paidJob('client');
      await api.pollFor(failed.job_id);
      expectStatus(await api.fail('miner', failed.job_id), 200, 'fail');

      // Two due escrows: the sweep settles them in one settle-batch call.
      const due = [
        await api.paidJob('client', { escrow_timeout_seconds: 2 }),
        await api.paidJob('client', { escrow_timeout_seconds: 2 }),
      ];
      await waitUntilDue(due.map((j) => j.job_id));
      const batchesBefore = await metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', {
        call: 'escrow_settle_batch',
      });
      await expect(expireDue()).resolves.toBe(2);
      expect(
        await metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_settle_batch' }),
      ).toBe(batchesBefore + 1);

      const refunded = [refundedByRoute, canceled, failed, ...due];
      for (const job of [released, ...refunded]) {
        expect((await api.payment(job.payment_id)).status).toBe(job === released ? 'released' : 'refunded');
      }
      // What the daemon received: exactly the create key and the settle key per payment,
      // the settle key on the release route for one and on the refund route for the others.
      const expected: Record<string, string> = {};
      for (const job of [released, ...refunded]) expected[`${job.payment_id}:create`] = '/api/v1/escrow/create';
      expected[`${released.payment_id}:settle`] = '/api/v1/escrow/release';
      for (const job of refunded) expected[`${job.payment_id}:settle`] = '/api/v1/refund';
      expect(await daemonKeys([released, ...refunded].map((j) => j.payment_id))).toEqual(expected);
    });
  });

  describe('no transaction is open during a daemon call', () => {
    const LATENCY_MS = 2000;

    /**
     * Runs `call` while the daemon holds every request for LATENCY_MS and samples
     * pg_stat_activity of the coordinator's database until it answers. A transaction
     * kept open across the daemon call would be seen lasting about LATENCY_MS; the
     * coordinator's own transactions last milliseconds, so 1 s tells them apart.
     * `inFlight` is SQL that is true while the call is decided but not yet recorded.
     */
    async function sampleDuring<T>(call: () => Promise<T>, inFlight: string, params: unknown[]) {
      const longTransactions = new Map<number, Body>();
      let inFlightSamples = 0;
      await pd.daemon.setFaults({ latency_ms: LATENCY_MS });
      const started = Date.now();
      let done = false;
      // supertest's request is a thenable, not a Promise: it is sent once awaited.
      const answered = Promise.resolve(call()).finally(() => {
        done = true;
      });
      await withClient(t.databaseUrl, async (client) => {
        while (!done) {
          const { rows } = await client.query(
            `SELECT (${inFlight}) AS in_flight,
                    (SELECT coalesce(json_agg(json_build_object('pid', pid, 'state', state, 'query', query)), '[]'::json)
                       FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND xact_start < clock_timestamp() - interval '1 second') AS long_transactions`,
            params,
          );
          if (rows[0].in_flight) inFlightSamples++;
          for (const session of rows[0].long_transactions) longTransactions.set(session.pid, session);
          await sleep(50);
        }
      });
      const result = await answered;
      await pd.daemon.resetFaults();
      return {
        result,
        elapsedMs: Date.now() - started,
        inFlightSamples,
        longTransactions: [...longTransactions.values()],
      };
    }

    it('none while the daemon holds an escrow creation, a release, a refund and a sweep settle-batch for 2 s each', async () => {
      await api.registerFreshMiner('miner');

      const create = await sampleDuring(
        () => api.postJob('client', { payload: PAYLOAD, payment_amount: '0.001' }),
        `EXISTS (SELECT 1 FROM job_payments WHERE status = 'pending')`,
        [],
      );
      const created = expectStatus(create.result, 201, 'POST /v1/jobs');
      expect(created.payment_status).toBe('escrowed');

      await api.pollFor(created.job_id);
      const release = await sampleDuring(
        () => api.result('miner', created.job_id),
        `EXISTS (SELECT 1 FROM job_payments WHERE payment_id = $1 AND status = 'releasing')`,
        [created.payment_id],
      );
      expectStatus(release.result, 200, 'result');

      const toCancel = await api.paidJob('client');
      const refund = await sampleDuring(
        () => api.cancel('client', toCancel.job_id),
        `EXISTS (SELECT 1 FROM job_payments WHERE payment_id = $1 AND status = 'refunding')`,
        [toCancel.payment_id],
      );
      expectStatus(refund.result, 200, 'cancel');

      const due = [
        await api.paidJob('client', { escrow_timeout_seconds: 2 }),
        await api.paidJob('client', { escrow_timeout_seconds: 2 }),
      ];
      await waitUntilDue(due.map((j) => j.job_id));
      const sweep = await sampleDuring(
        () => expireDue(),
        `EXISTS (SELECT 1 FROM job_payments WHERE payment_id = ANY($1::uuid[]) AND status = 'refunding')`,
        [due.map((j) => j.payment_id)],
      );
      expect(sweep.result).toBe(2);

      for (const [name, run] of Object.entries({ create, release, refund, sweep })) {
        // The daemon really held the call, and it was sampled meanwhile.
        expect({ name, held: run.elapsedMs >= LATENCY_MS }).toEqual({ name, held: true });
        expect({ name, sampled: run.inFlightSamples >= 5 }).toEqual({ name, sampled: true });
        expect({ name, longTransactions: run.longTransactions }).toEqual({ name, longTransactions: [] });
      }
      expect((await api.payment(created.payment_id)).status).toBe('released');
      expect((await api.payment(toCancel.payment_id)).status).toBe('refunded');
      for (const job of due) expect((await api.payment(job.payment_id)).status).toBe('refunded');
    });
  });

  describe('dispatch fails closed on the payout currency', () => {
    it('an AITBC job goes only to a miner with an aitbc payout address, a BTC job only to one with a BTC address; each is paid in its currency', async () => {
      const aitbcPayer = await pd.daemon.fundedAddress('100', 'AITBC');
      const btcPayout = await api.registerFreshMiner('miner');
      const aitbcPayout = await pd.daemon.newAddress('AITBC');
      expectStatus(
        await t.http.post('/v1/miners/register').set('X-Api-Key', t.keys.miner2).send({ payout_address: aitbcPayout }),
        200,
        'register miner2',
      );

      // The AITBC job is older, so it would be handed out first if the currency were ignored.
      const aitbcJob = await api.paidJob('client', {
        payment_amount: '12.5',
        payment_currency: 'AITBC',
        payer_address: aitbcPayer,
      });
      expect(aitbcJob).toMatchObject({ payment_status: 'escrowed', payment_currency: 'AITBC' });
      const btcJob = await api.paidJob('client');

      // The BTC miner is given the BTC job, and after it nothing: the AITBC job stays queued.
      expect((await api.pollFor(btcJob.job_id, 'miner')).job_id).toBe(btcJob.job_id);
      expect((await api.pollRaw('miner')).status).toBe(204);
      expect((await api.job(aitbcJob.job_id)).state).toBe('queued');
      // The aitbc miner gets the AITBC job.
      expect((await api.pollFor(aitbcJob.job_id, 'miner2')).job_id).toBe(aitbcJob.job_id);

      expectStatus(await api.result('miner2', aitbcJob.job_id), 200, 'AITBC result');
      expectStatus(await api.result('miner', btcJob.job_id), 200, 'BTC result');
      expect(await api.payment(aitbcJob.payment_id)).toMatchObject({
        status: 'released',
        payee_address: aitbcPayout,
        amount: '12.50000000',
      });
      expect(await pd.daemon.balance(aitbcPayout, 'AITBC')).toBe('12.50000000');
      expect(await pd.daemon.balance(aitbcPayer, 'AITBC')).toBe('87.50000000');
      expect(await pd.daemon.balance(btcPayout, 'BTC')).toBe('0.00100000');
    });
  });

  describe('deadlines: the earlier of the TTL and the escrow expiry', () => {
    it('an escrow expiring before the TTL sets the deadline, and the sweep refunds it with reason escrow_expired', async () => {
      const clientBefore = await api.balance(t.clientWallet);
      const job = await api.paidJob('client', { ttl_seconds: 3600, escrow_timeout_seconds: 3 });
      const payment = await api.payment(job.payment_id);
      // Both deadlines count from the same database now(): the escrow's 3 s is the earlier.
      expect(Date.parse(job.expires_at) - Date.parse(job.requested_at)).toBe(3000);
      expect(job.expires_at).toBe(payment.expires_at);

      await waitUntilDue([job.job_id]);
      await expect(expireDue()).resolves.toBe(1);
      expect(await api.job(job.job_id)).toMatchObject({ state: 'expired', payment_status: 'refunded' });
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'refunded', settle_reason: 'escrow_expired' });
      expect(kinds(await pd.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'refund']);
      expect(await api.balance(t.clientWallet)).toBe(clientBefore);
    });

    it('a TTL ending before the escrow expiry sets the deadline, and the sweep refunds it with reason job_expired', async () => {
      const job = await api.paidJob('client', { ttl_seconds: 3, escrow_timeout_seconds: 3600 });
      const payment = await api.payment(job.payment_id);
      expect(Date.parse(job.expires_at) - Date.parse(job.requested_at)).toBe(3000);
      expect(Date.parse(payment.expires_at) - Date.parse(job.requested_at)).toBe(3_600_000);

      await waitUntilDue([job.job_id]);
      await expect(expireDue()).resolves.toBe(1);
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'refunded', settle_reason: 'job_expired' });
      expect(kinds(await pd.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'refund']);
    });

    it('POST /v1/payments on a queued job pulls its deadline in to the escrow expiry', async () => {
      const job = await api.unpaidJob('client');
      expect(Date.parse(job.expires_at) - Date.parse(job.requested_at)).toBe(900_000);
      const paid = expectStatus(
        await api.postPayment('client', { job_id: job.job_id, amount: '0.001', escrow_timeout_seconds: 3 }),
        201,
        'POST /v1/payments',
      );
      const after = await api.job(job.job_id);
      expect(after.expires_at).toBe(paid.expires_at);
      expect(Date.parse(after.expires_at)).toBeLessThan(Date.parse(job.expires_at));

      await waitUntilDue([job.job_id]);
      await expect(expireDue()).resolves.toBe(1);
      expect(await api.payment(paid.payment_id)).toMatchObject({ status: 'refunded', settle_reason: 'escrow_expired' });
    });
  });

  describe('POST /v1/payments on an existing job', () => {
    it('escrows the amount at the daemon; the job is then dispatched and its completion pays the miner', async () => {
      const clientBefore = await api.balance(t.clientWallet);
      const job = await api.unpaidJob('client');
      const paid = expectStatus(
        await api.postPayment('client', { job_id: job.job_id, amount: '0.00250000' }),
        201,
        'POST /v1/payments',
      );
      expect(paid).toMatchObject({
        job_id: job.job_id,
        status: 'escrowed',
        amount: '0.00250000',
        escrow_id: expect.any(String),
      });
      // Held at the daemon: one create transfer, the client's balance down by exactly the amount.
      expect(kinds(await pd.daemon.escrowTransfers(paid.escrow_id))).toEqual(['create']);
      expect(diff(await api.balance(t.clientWallet), clientBefore)).toBe('0.00250000');
      expect(await api.job(job.job_id)).toMatchObject({
        payment_id: paid.payment_id,
        payment_status: 'escrowed',
        payment_amount: '0.00250000',
      });

      const payout = await api.registerFreshMiner('miner');
      const dispatched = await api.pollFor(job.job_id);
      expect(dispatched).toMatchObject({ state: 'running', payment_id: paid.payment_id });
      expect(await api.payment(paid.payment_id)).toMatchObject({ status: 'escrowed', payee_address: payout });
      expectStatus(await api.result('miner', job.job_id), 200, 'result');
      expect(await api.payment(paid.payment_id)).toMatchObject({ status: 'released' });
      expect(kinds(await pd.daemon.escrowTransfers(paid.escrow_id))).toEqual(['create', 'release']);
      expect(await api.balance(payout)).toBe('0.00250000');
    });
  });

  describe('database constraints', () => {
    it('payment_events is append-only: UPDATE and DELETE are refused by the database', async () => {
      const job = await api.paidJob('client');
      const [event] = await api.query<{ event_id: string; to_status: string }>(
        `SELECT event_id::text, to_status FROM payment_events WHERE payment_id = $1 ORDER BY event_id LIMIT 1`,
        [job.payment_id],
      );
      await expect(
        api.query(`UPDATE payment_events SET to_status = 'released' WHERE event_id = $1`, [event.event_id]),
      ).rejects.toThrow(/append-only/);
      await expect(api.query(`DELETE FROM payment_events WHERE event_id = $1`, [event.event_id])).rejects.toThrow(
        /append-only/,
      );
      const events = await api.query<{ event_id: string; to_status: string }>(
        `SELECT event_id::text, to_status FROM payment_events WHERE event_id = $1`,
        [event.event_id],
      );
      expect(events).toEqual([event]);
    });

    it('one live payment per job: 10 concurrent POST /v1/payments for one job give one 201 and nine 409, one hold at the daemon', async () => {
      const payer = await pd.daemon.fundedAddress('1');
      const job = await api.unpaidJob('client');
      const abortsBefore = await aborts();
      const responses = await Promise.all(
        Array.from({ length: 10 }, () =>
          api.postPayment('client', { job_id: job.job_id, amount: '0.001', payer_address: payer }),
        ),
      );
      const statuses = responses.map((r) => r.status).sort();
      expect(statuses).toEqual([201, ...Array(9).fill(409)]);
      for (const loser of responses.filter((r) => r.status === 409)) expect(loser.body.code).toBe('JOB_ALREADY_PAID');
      const winner = responses.find((r) => r.status === 201) as Response;

      const payments = await api.query<{ payment_id: string; status: string }>(
        `SELECT payment_id, status FROM job_payments WHERE job_id = $1`,
        [job.job_id],
      );
      expect(payments).toEqual([{ payment_id: winner.body.payment_id, status: 'escrowed' }]);
      const [{ holds }] = await query<{ holds: number }>(
        pd.databaseUrl,
        `SELECT count(*)::int AS holds FROM wallet_daemon.escrows WHERE payer = $1`,
        [payer],
      );
      expect(holds).toBe(1);
      expect(await pd.daemon.balance(payer)).toBe('0.99900000');
      expect(await aborts()).toBe(abortsBefore);
    });

    it('one live payment per job: a second live payment row for a job violates the partial unique index', async () => {
      const job = await api.paidJob('client');
      await expect(
        api.query(
          `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                     escrow_timeout_seconds, created_at, updated_at, expires_at)
           SELECT gen_random_uuid(), job_id, client_id, amount, currency, 'pending', payer_address, refund_address,
                  escrow_timeout_seconds, now(), now(), expires_at FROM job_payments WHERE payment_id = $1`,
          [job.payment_id],
        ),
      ).rejects.toThrow(/job_payments_one_live_per_job/);
      const [{ n }] = await api.query<{ n: number }>(`SELECT count(*)::int AS n FROM job_payments WHERE job_id = $1`, [
        job.job_id,
      ]);
      expect(n).toBe(1);
    });

    it('a released payment can never also be refunded: the payment row and the escrow record refuse it', async () => {
      await api.registerFreshMiner('miner');
      const job = await api.paidJob('client');
      await api.pollFor(job.job_id);
      expectStatus(await api.result('miner', job.job_id), 200, 'result');
      expect((await api.payment(job.payment_id)).status).toBe('released');

      await expect(
        api.query(
          `UPDATE job_payments SET status = 'refunded', refund_transaction_hash = 'forged', refunded_at = now() WHERE payment_id = $1`,
          [job.payment_id],
        ),
      ).rejects.toThrow(/job_payments_one_settlement/);
      await expect(
        api.query(`UPDATE payment_escrows SET is_refunded = true, refunded_at = now() WHERE payment_id = $1`, [
          job.payment_id,
        ]),
      ).rejects.toThrow(/payment_escrows_never_both/);
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'released', refund_transaction_hash: null });
      const [escrow] = await api.query(`SELECT is_released, is_refunded FROM payment_escrows WHERE payment_id = $1`, [
        job.payment_id,
      ]);
      expect(escrow).toEqual({ is_released: true, is_refunded: false });
    });

    it('the other CHECKs: amount > 0, a known status, a payee before releasing, a transaction hash once released', async () => {
      // Escrowed and not dispatched: no payee yet.
      const job = await api.paidJob('client');
      const attempt = (set: string) =>
        api.query(`UPDATE job_payments SET ${set} WHERE payment_id = $1`, [job.payment_id]);
      await expect(attempt(`amount = 0`)).rejects.toThrow(/job_payments_amount_positive/);
      await expect(attempt(`amount = -0.001`)).rejects.toThrow(/job_payments_amount_positive/);
      await expect(attempt(`status = 'paid'`)).rejects.toThrow(/job_payments_status_check/);
      await expect(attempt(`status = 'releasing'`)).rejects.toThrow(/job_payments_release_has_payee/);
      await expect(attempt(`status = 'released', payee_address = payer_address`)).rejects.toThrow(
        /job_payments_released_has_tx/,
      );
      expect(await api.payment(job.payment_id)).toMatchObject({
        status: 'escrowed',
        amount: '0.00100000',
        payee_address: null,
        transaction_hash: null,
      });
    });
  });

  describe('job.payment_status mirrors the payment', () => {
    it('is set by the database in the same statement: an UPDATE of the payment row alone moves it, and a rollback undoes both', async () => {
      const job = await api.paidJob('client');
      const seen = await withClient(t.databaseUrl, async (client) => {
        await client.query('BEGIN');
        try {
          await client.query(`UPDATE job_payments SET status = 'refunding', updated_at = now() WHERE payment_id = $1`, [
            job.payment_id,
          ]);
          return (await client.query(`SELECT payment_status FROM job WHERE job_id = $1`, [job.job_id])).rows[0]
            .payment_status;
        } finally {
          await client.query('ROLLBACK');
        }
      });
      expect(seen).toBe('refunding');
      expect(await api.job(job.job_id)).toMatchObject({ payment_status: 'escrowed' });
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'escrowed' });
    });
  });

  describe('payment to the address recorded at dispatch', () => {
    it('a miner re-registering a new payout address after dispatch is paid at the old one', async () => {
      const atDispatch = await api.registerFreshMiner('miner');
      const job = await api.paidJob('client', { payment_amount: '0.0042' });
      await api.pollFor(job.job_id);
      const later = await api.registerFreshMiner('miner');
      expect(later).not.toBe(atDispatch);

      expectStatus(await api.result('miner', job.job_id), 200, 'result');
      const payment = await api.payment(job.payment_id);
      expect(payment).toMatchObject({ status: 'released', payee_address: atDispatch });
      // The daemon's ledger: the release went to the address recorded at dispatch.
      const transfers = await pd.daemon.escrowTransfers(payment.escrow_id);
      expect(transfers.find((x) => x.kind === 'release')).toMatchObject({ to: atDispatch, amount: '0.00420000' });
      expect(await api.balance(atDispatch)).toBe('0.00420000');
      expect(await api.balance(later)).toBe('0.00000000');
    });
  });

  describe('lock order: deadlocks are counted, not hidden', () => {
    it('two transactions locking two jobs in opposite orders: PostgreSQL aborts one, it is retried, and db_transaction_aborts_total counts it', async () => {
      const [a, b] = [await api.unpaidJob('client'), await api.unpaidJob('client')];
      const tx = t.app.get(Transactions);
      const before = await metricValue(t.http, 'db_transaction_aborts_total', { reason: 'deadlock_detected' });

      // Both take their first lock before either asks for its second: a certain deadlock.
      // The side PostgreSQL aborts waits for the other to commit before it retries, so
      // the retry cannot run into a second deadlock.
      let firstLocks = 0;
      let bothLocked!: () => void;
      const barrier = new Promise<void>((resolve) => (bothLocked = resolve));
      const attempts = { a: 0, b: 0 };
      const runs = {} as Record<'a' | 'b', Promise<void>>;
      const lockBoth = (name: 'a' | 'b', other: 'a' | 'b', first: string, second: string) =>
        tx.run(async (sql) => {
          const attempt = ++attempts[name];
          if (attempt > 1) await runs[other];
          await sql.rows(`SELECT 1 FROM job WHERE job_id = $1 FOR UPDATE`, [first]);
          if (attempt === 1) {
            if (++firstLocks === 2) bothLocked();
            await barrier;
          }
          await sql.rows(`SELECT 1 FROM job WHERE job_id = $1 FOR UPDATE`, [second]);
        });
      runs.a = lockBoth('a', 'b', a.job_id, b.job_id);
      runs.b = lockBoth('b', 'a', b.job_id, a.job_id);
      await Promise.all([runs.a, runs.b]);

      // One side ran twice; both committed in the end.
      expect(attempts.a + attempts.b).toBe(3);
      expect(await metricValue(t.http, 'db_transaction_aborts_total', { reason: 'deadlock_detected' })).toBe(
        before + 1,
      );
    });
  });
});
