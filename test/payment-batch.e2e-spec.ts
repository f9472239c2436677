import { Money } from '../src/common/money';
import { JobsService } from '../src/jobs/jobs.service';
import { PaymentsService } from '../src/payments/payments.service';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { moveDeadlines } from './support/deadlines';
import { claimJob, createPaidJob, kinds, metricValue, paymentEvents, query, registerMiner } from './support/flow';

// POST /v1/payments/batch (docs/money-and-states.md, "Batches"): each item answered exactly as its
// single release/refund call would be, in request order, a failing item never failing
// its neighbours; the envelope checked as a whole. A private daemon, so its ledger
// totals are this file's alone.
describe('POST /v1/payments/batch', () => {
  let pd: PrivateDaemon;
  let t: TestApp;
  let payout: string;

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    t = await startTestApp({}, { daemon: pd.daemon });
    payout = await pd.daemon.newAddress();
    await registerMiner(t.http, t.keys.miner, payout);
  });

  afterEach(async () => {
    await pd.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await t?.close();
    await pd?.stop();
  });

  const batch = (key: 'client' | 'client2' | 'admin' | 'miner', items: unknown, idempotencyKey?: string) => {
    const call = t.http.post('/v1/payments/batch').set('X-Api-Key', t.keys[key]);
    return (idempotencyKey ? call.set('Idempotency-Key', idempotencyKey) : call).send({ items });
  };
  const single = (key: 'client' | 'client2' | 'admin', paymentId: string, action: string, body: object = {}) =>
    t.http.post(`/v1/payments/${paymentId}/${action}`).set('X-Api-Key', t.keys[key]).send(body);
  const statusOf = async (paymentId: string) =>
    (
      await query<{ status: string }>(t.databaseUrl, `SELECT status FROM job_payments WHERE payment_id = $1`, [
        paymentId,
      ])
    )[0]?.status;
  const settlements = async (paymentId: string) =>
    (await paymentEvents(t.http, t.keys.admin, paymentId)).filter(
      (e: { to: string }) => e.to === 'released' || e.to === 'refunded',
    ).length;
  const running = async (amount = '0.001') => {
    const job = await createPaidJob(t.http, t.keys.client, { amount });
    await claimJob(t.http, t.keys.miner, job.job_id);
    return job;
  };

  it("a mixed batch: each item gets its single call's answer in request order, the good ones settle, the refused ones change nothing", async () => {
    // Dispatched first: a poll hands out the oldest queued job, and the jobs below must stay queued.
    const toRelease = await running('0.0011');
    const runningRefund = await running();
    const toRefund = await createPaidJob(t.http, t.keys.client, { amount: '0.0012' });
    const noPayee = await createPaidJob(t.http, t.keys.client);
    const settled = await createPaidJob(t.http, t.keys.client);
    expect((await single('client', settled.payment_id, 'refund')).status).toBe(200);
    const othersJob = await createPaidJob(t.http, t.keys.client2);
    const wrongJob = await createPaidJob(t.http, t.keys.client);
    const wrongAmount = await createPaidJob(t.http, t.keys.client, { amount: '0.002' });
    const clientBefore = new Money(await pd.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await pd.daemon.balance(payout));

    const items = [
      { payment_id: toRelease.payment_id, action: 'release', reason: 'work accepted', amount: '0.0011' },
      { payment_id: toRefund.payment_id, action: 'refund', job_id: toRefund.job_id },
      { payment_id: noPayee.payment_id, action: 'release' },
      { payment_id: settled.payment_id, action: 'refund' },
      { payment_id: othersJob.payment_id, action: 'refund' },
      { payment_id: '0193a5b0-7c1f-7000-8000-000000000999', action: 'release' },
      { payment_id: 'not-a-uuid', action: 'release' },
      { payment_id: runningRefund.payment_id, action: 'refund' },
      { payment_id: wrongJob.payment_id, action: 'refund', job_id: toRefund.job_id },
      // More than the payment (a release of less is a partial release, README "Escrow lifecycle").
      { payment_id: wrongAmount.payment_id, action: 'release', amount: '0.0021' },
      { payment_id: noPayee.job_id, action: 'settle' },
      { payment_id: settled.job_id, action: 'refund', surprise: true },
    ];
    const response = await batch('client', items);
    expect(response.status).toBe(200);
    const answer = response.body;
    expect(
      answer.items.map((i: { index: number; status_code: number; code?: string; error?: { code: string } }) => [
        i.index,
        i.status_code,
        i.error?.code ?? null,
      ]),
    ).toEqual([
      [0, 200, null],
      [1, 200, null],
      [2, 409, 'PAYMENT_NO_PAYEE'],
      [3, 409, 'PAYMENT_ALREADY_SETTLED'],
      [4, 404, 'PAYMENT_NOT_FOUND'],
      [5, 404, 'PAYMENT_NOT_FOUND'],
      [6, 404, 'PAYMENT_NOT_FOUND'],
      [7, 409, 'REFUND_NOT_ALLOWED'],
      [8, 409, 'PAYMENT_JOB_MISMATCH'],
      [9, 400, 'VALIDATION_FAILED'],
      [10, 400, 'VALIDATION_FAILED'],
      [11, 400, 'VALIDATION_FAILED'],
    ]);
    expect({ succeeded: answer.succeeded, failed: answer.failed }).toEqual({ succeeded: 2, failed: 10 });
    expect(answer.items[0]).toMatchObject({
      payment_id: toRelease.payment_id,
      action: 'release',
      payment: { status: 'released', payee_address: payout, settle_reason: 'work accepted' },
    });
    expect(answer.items[1]).toMatchObject({
      payment_id: toRefund.payment_id,
      action: 'refund',
      payment: { status: 'refunded', settle_reason: 'refund_requested' },
    });

    // The single calls give the very same refusals (nothing about them changed in between).
    const singles = await Promise.all(
      [2, 3, 4, 5, 6, 7, 8].map(async (index) => {
        const { payment_id, action, ...body } = items[index] as { payment_id: string; action: string };
        const response = await single('client', payment_id, action, body);
        return [index, response.status, response.body.code];
      }),
    );
    expect(singles).toEqual(
      answer.items
        .filter((i: { index: number }) => [2, 3, 4, 5, 6, 7, 8].includes(i.index))
        .map((i: { index: number; status_code: number; error: { code: string } }) => [
          i.index,
          i.status_code,
          i.error.code,
        ]),
    );
    // The same error shape, request id included.
    expect(Object.keys(answer.items[2].error).sort()).toEqual([
      'code',
      'details',
      'message',
      'request_id',
      'status_code',
    ]);

    // Money: the miner got the release once, the client the refund once; the refused ones are still escrowed.
    expect(new Money(await pd.daemon.balance(payout)).eq(payoutBefore.plus('0.0011'))).toBe(true);
    expect(new Money(await pd.daemon.balance(t.clientWallet)).eq(clientBefore.plus('0.0012'))).toBe(true);
    for (const job of [noPayee, othersJob, runningRefund, wrongJob, wrongAmount])
      expect(await statusOf(job.payment_id)).toBe('escrowed');
    // A refund of a queued job cancels it, as the single refund does.
    expect((await query(t.databaseUrl, `SELECT state FROM job WHERE job_id = $1`, [toRefund.job_id]))[0].state).toBe(
      'canceled',
    );
  });

  it.each([
    ['not an array', { items: { payment_id: 'x' } }],
    ['no items', { items: [] }],
    ['501 items', { items: Array.from({ length: 501 }, (_, i) => ({ payment_id: `p${i}`, action: 'refund' })) }],
    ['an item that is not an object', { items: ['refund everything'] }],
    ['a field beside items', { items: [{ action: 'refund' }], all: true }],
  ])('a malformed envelope (%s) is a 400 and nothing is done', async (_what, body) => {
    const job = await createPaidJob(t.http, t.keys.client);
    const payload = JSON.parse(JSON.stringify(body).replace(/"p0"/, JSON.stringify(job.payment_id)));
    const response = await t.http.post('/v1/payments/batch').set('X-Api-Key', t.keys.client).send(payload);
    expect({ status: response.status, code: response.body.code }).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    expect(await statusOf(job.payment_id)).toBe('escrowed');
  });

  it('a repeated payment_id is a 400 for the whole request: the other items are not settled either', async () => {
    const one = await createPaidJob(t.http, t.keys.client);
    const two = await createPaidJob(t.http, t.keys.client);
    const response = await batch('client', [
      { payment_id: one.payment_id, action: 'refund' },
      { payment_id: two.payment_id, action: 'refund' },
      { payment_id: one.payment_id, action: 'release' },
    ]);
    expect({ status: response.status, code: response.body.code }).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    expect([await statusOf(one.payment_id), await statusOf(two.payment_id)]).toEqual(['escrowed', 'escrowed']);
  });

  it('500 refunds in one request: one decision, daemon batch calls of WALLET_DAEMON_BATCH_SIZE, each settled exactly once; an Idempotency-Key replays the whole answer', async () => {
    // 500 escrowed payments, made 100 at a time by POST /v1/jobs/batch.
    const jobs: { job_id: string; payment_id: string }[] = [];
    for (let i = 0; i < 5; i++) {
      const created = await t.http
        .post('/v1/jobs/batch')
        .set('X-Api-Key', t.keys.client)
        .send({
          items: Array.from({ length: 100 }, () => ({
            payload: { job_type: 'ai_inference' },
            payment_amount: '0.00001',
          })),
        });
      expect(created.body.succeeded).toBe(100);
      jobs.push(
        ...created.body.items.map(
          (item: { job: { job_id: string; payment_id: string; payment_status: string } }) => (
            expect(item.job.payment_status).toBe('escrowed'),
            item.job
          ),
        ),
      );
    }
    const clientBefore = new Money(await pd.daemon.balance(t.clientWallet));
    const calls = () =>
      metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_settle_batch' });
    const callsBefore = await calls();
    const items = jobs.map((job) => ({ payment_id: job.payment_id, action: 'refund', reason: 'batch of 500' }));
    const response = await batch('client', items, 'batch-500');
    expect(response.status).toBe(200);
    expect({ succeeded: response.body.succeeded, failed: response.body.failed }).toEqual({ succeeded: 500, failed: 0 });
    expect(
      response.body.items.every(
        (i: { payment: { status: string } }, index: number) =>
          i.payment.status === 'refunded' && response.body.items[index].payment_id === jobs[index].payment_id,
      ),
    ).toBe(true);
    // WALLET_DAEMON_BATCH_SIZE is 500 by default: 500 settlements are one daemon call
    // (smaller sizes split it: batch-settlement.e2e-spec.ts).
    expect((await calls()) - callsBefore).toBe(1);
    expect(
      new Money(await pd.daemon.balance(t.clientWallet)).eq(clientBefore.plus(new Money('0.00001').times(500))),
    ).toBe(true);

    const replay = await batch('client', items, 'batch-500');
    expect({ status: replay.status, replayed: replay.headers['idempotent-replayed'] }).toEqual({
      status: 200,
      replayed: 'true',
    });
    expect(replay.body).toEqual(response.body);
    const [{ n }] = await query<{ n: string }>(
      t.databaseUrl,
      `SELECT count(*) AS n FROM payment_events WHERE payment_id = ANY($1::uuid[]) AND to_status = 'refunded'`,
      [jobs.map((j) => j.payment_id)],
    );
    expect(Number(n)).toBe(500);
  });

  it('set statements keep the trigger-kept copies exact: every job mirrors its payment, the rollup equals the payments, one delta per key and statement', async () => {
    const jobs: { job_id: string; payment_id: string }[] = [];
    for (const key of ['client', 'client2'] as const) {
      const created = await t.http
        .post('/v1/jobs/batch')
        .set('X-Api-Key', t.keys[key])
        .send({
          items: Array.from({ length: 80 }, (_, i) => ({ payload: { i }, payment_amount: `0.0000${(i % 9) + 1}` })),
        });
      expect(created.body.succeeded).toBe(80);
      jobs.push(...created.body.items.map((item: { job: { job_id: string; payment_id: string } }) => item.job));
    }
    const deltaRows = async () =>
      Number((await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM payment_rollup_delta`))[0].n);
    const before = await deltaRows();
    // 150 refunds of two clients in one request: one decision statement, one recording statement.
    const response = await batch(
      'admin',
      jobs.slice(0, 150).map((job) => ({ payment_id: job.payment_id, action: 'refund' })),
    );
    expect(response.body).toMatchObject({ succeeded: 150, failed: 0 });
    // Row triggers wrote 12 rows per refund (1,800 here). Summed per statement, each of the two
    // statements (decision, recording) writes one row per key and status: 4 keys (all payments,
    // two clients, no miner) × 2 statuses = 8, doubled should UTC midnight pass meanwhile.
    expect((await deltaRows()) - before).toBeLessThanOrEqual(2 * 8 * 2);

    const [{ stale }] = await query<{ stale: string }>(
      t.databaseUrl,
      `SELECT count(*) AS stale FROM job j JOIN job_payments p ON p.payment_id = j.payment_id
        WHERE j.payment_status IS DISTINCT FROM p.status OR j.payment_amount IS DISTINCT FROM p.amount`,
    );
    expect(Number(stale)).toBe(0);
    const mirrored = await query<{ payment_status: string }>(
      t.databaseUrl,
      `SELECT payment_status FROM job WHERE job_id = ANY($1::uuid[])`,
      [jobs.map((job) => job.job_id)],
    );
    expect(mirrored.filter((j) => j.payment_status === 'refunded')).toHaveLength(150);
    expect(mirrored.filter((j) => j.payment_status === 'escrowed')).toHaveLength(10);

    // The rollup (folded rows plus deltas) against the payments themselves, every key of every scope.
    const [{ differences }] = await query<{ differences: string }>(
      t.databaseUrl,
      `WITH truth AS (
         SELECT s.scope, s.id AS scope_id, (p.created_at AT TIME ZONE 'UTC')::date AS day, p.currency, p.status,
                count(*) AS count, sum(p.amount) AS amount
           FROM job_payments p
          CROSS JOIN LATERAL (VALUES ('a', ''), ('c', p.client_id), ('m', COALESCE(p.miner_id, ''))) AS s(scope, id)
          GROUP BY 1, 2, 3, 4, 5),
       rolled AS (
         SELECT scope, scope_id, day, currency, status, sum(count) AS count, sum(amount) AS amount
           FROM (SELECT scope, scope_id, day, currency, status, count, amount FROM payment_rollup
                 UNION ALL
                 SELECT scope, scope_id, day, currency, status, count, amount FROM payment_rollup_delta) r
          GROUP BY 1, 2, 3, 4, 5
         HAVING sum(count) <> 0 OR sum(amount) <> 0)
       SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM rolled) a)
            + (SELECT count(*) FROM (SELECT * FROM rolled EXCEPT SELECT * FROM truth) b) AS differences`,
    );
    expect(Number(differences)).toBe(0);
  });

  it("an admin settles any client's payments in one batch; a miner may not call it", async () => {
    const mine = await running();
    const theirs = await createPaidJob(t.http, t.keys.client2);
    const response = await batch('admin', [
      { payment_id: mine.payment_id, action: 'refund', reason: 'dispute resolved for the client' },
      { payment_id: theirs.payment_id, action: 'refund' },
    ]);
    expect(
      response.body.items.map((i: { status_code: number; payment: { status: string } }) => [
        i.status_code,
        i.payment.status,
      ]),
    ).toEqual([
      [200, 'refunded'],
      [200, 'refunded'],
    ]);
    expect((await batch('miner', [{ payment_id: theirs.payment_id, action: 'refund' }])).status).toBe(403);
  });

  it("batches, single calls, miners' results and the expiry sweep racing over the same payments: each settles exactly once, no deadlock", async () => {
    const jobs = [];
    for (let i = 0; i < 24; i++) jobs.push(await running('0.00002'));
    const aborts = () => metricValue(t.http, 'db_transaction_aborts_total');
    const abortsBefore = await aborts();
    const clientBefore = new Money(await pd.daemon.balance(t.clientWallet));
    const payoutBefore = new Money(await pd.daemon.balance(payout));
    // A third of them past their deadline, so the sweep competes for those.
    await moveDeadlines(
      t.databaseUrl,
      jobs.slice(0, 8).map((j) => j.job_id),
      jobs.slice(0, 8).map(() => -1000),
      { escrow: true },
    );

    const ids = jobs.map((j) => j.payment_id);
    const half = (from: number) => ids.slice(from, from + 12).map((payment_id) => ({ payment_id, action: 'refund' }));
    const answers = await Promise.all([
      batch('admin', half(0)),
      batch(
        'admin',
        ids.map((payment_id) => ({ payment_id, action: 'release' })),
      ),
      batch('admin', half(12)),
      ...jobs.map((job, i) =>
        i % 2
          ? single('admin', job.payment_id, 'refund')
          : t.http
              .post(`/v1/miners/jobs/${job.job_id}/result`)
              .set('X-Api-Key', t.keys.miner)
              .send({ result: { ok: i } }),
      ),
      t.app.get(JobsService).expireDue(),
    ]);
    for (const answer of answers.slice(0, 3)) expect((answer as { status: number }).status).toBe(200);
    // Whatever is still decided (a sweep's settlement in flight) is finished by the re-drive.
    await t.app
      .get(PaymentsService)
      .settleMany(
        await query(
          t.databaseUrl,
          `SELECT * FROM job_payments WHERE payment_id = ANY($1::uuid[]) AND status IN ('releasing','refunding')`,
          [ids],
        ),
      );

    let released = new Money(0);
    let refunded = new Money(0);
    for (const job of jobs) {
      expect(await settlements(job.payment_id)).toBe(1);
      const [row] = await query<{ status: string; escrow_id: string }>(
        t.databaseUrl,
        `SELECT status, escrow_id FROM job_payments WHERE payment_id = $1`,
        [job.payment_id],
      );
      expect(['released', 'refunded']).toContain(row.status);
      expect(kinds(await pd.daemon.escrowTransfers(row.escrow_id))).toEqual([
        'create',
        row.status === 'released' ? 'release' : 'refund',
      ]);
      if (row.status === 'released') released = released.plus('0.00002');
      else refunded = refunded.plus('0.00002');
    }
    expect(new Money(await pd.daemon.balance(payout)).eq(payoutBefore.plus(released))).toBe(true);
    expect(new Money(await pd.daemon.balance(t.clientWallet)).eq(clientBefore.plus(refunded))).toBe(true);
    expect(await aborts()).toBe(abortsBefore);
  });
});
