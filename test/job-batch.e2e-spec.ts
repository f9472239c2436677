import { Money } from '../src/common/money';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon, WalletDaemonHelper } from './support/daemon';
import { startDaemonProxy } from './support/daemon-proxy';
import { kinds, metricValue, query } from './support/flow';

// POST /v1/jobs/batch (docs/money-and-states.md, "Batches"): each item answered exactly as its single
// POST /v1/jobs would be, in request order; the payments held in one create-batch call
// at the daemon. A private daemon, so its ledger totals are this file's alone.
describe('POST /v1/jobs/batch', () => {
  let pd: PrivateDaemon;
  let t: TestApp;

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    t = await startTestApp({}, { daemon: pd.daemon });
  });

  afterEach(async () => {
    await pd.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await t?.close();
    await pd?.stop();
  });

  const PAYLOAD = { job_type: 'ai_inference', parameters: { prompt: 'batch' } };
  const batch = (items: unknown, idempotencyKey?: string, key: 'client' | 'miner' = 'client') => {
    const call = t.http.post('/v1/jobs/batch').set('X-Api-Key', t.keys[key]);
    return (idempotencyKey ? call.set('Idempotency-Key', idempotencyKey) : call).send({ items });
  };
  const single = (body: object) => t.http.post('/v1/jobs').set('X-Api-Key', t.keys.client).send(body);
  const held = async () => new Money((await pd.daemon.ledgerTotals()).held);
  const createBatchCalls = () =>
    metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_create_batch' });
  /** The answer's fields a single call with the same body gives too (ids and times differ). */
  const comparable = (body: Record<string, unknown>) => {
    const same = Object.fromEntries(Object.entries(body).filter(([name]) => !/(_id|_at)$/.test(name)));
    return { fields: Object.keys(body).sort(), ...same };
  };

  it("a mixed batch: each item gets its single call's answer in request order; the paid ones are held in one daemon call", async () => {
    const emptyPayer = await pd.daemon.newAddress();
    const items = [
      { payload: PAYLOAD, payment_amount: '0.0013' },
      { payload: PAYLOAD },
      { payload: PAYLOAD, payment_amount: '0.0014', ttl_seconds: 600, escrow_timeout_seconds: 3600 },
      { payload: PAYLOAD, payment_amount: '-1' },
      { payload: PAYLOAD, payment_amount: '0.001', surprise: 'field' },
      { payload: PAYLOAD, ttl_seconds: 10 ** 9 },
      { payload: PAYLOAD, payment_amount: '0.001', payer_address: emptyPayer },
      { payload: 'not an object' },
      { payload: PAYLOAD, payment_currency: 'BTC' },
    ];
    const heldBefore = await held();
    const callsBefore = await createBatchCalls();
    const response = await batch(items);
    expect(response.status).toBe(200);
    const answer = response.body;
    expect({ succeeded: answer.succeeded, failed: answer.failed }).toEqual({ succeeded: 4, failed: 5 });
    expect(answer.items.map((i: { index: number }) => i.index)).toEqual(items.map((_, index) => index));

    // Each item is what the single call answers for the same body.
    for (const [index, body] of items.entries()) {
      const alone = await single(body);
      const item = answer.items[index];
      expect([index, item.status_code]).toEqual([index, alone.status]);
      if (alone.status === 201) expect(comparable(item.job)).toEqual(comparable(alone.body));
      else
        expect({ code: item.error.code, fields: Object.keys(item.error.details.fields ?? {}) }).toEqual({
          code: alone.body.code,
          fields: Object.keys(alone.body.details.fields ?? {}),
        });
    }
    expect(answer.items[0].job).toMatchObject({
      state: 'queued',
      payment_status: 'escrowed',
      payment_amount: '0.00130000',
    });
    expect(answer.items[1].job).toMatchObject({ state: 'queued', payment_id: null });
    expect(answer.items[6].job).toMatchObject({ state: 'failed', payment_status: 'failed' });
    expect(answer.items[6].job.error).toMatch(/insufficient/i);

    // The batch's two paid jobs (and not the empty payer's) were held, in one create-batch call.
    expect(await createBatchCalls()).toBe(callsBefore + 1);
    for (const index of [0, 2]) {
      const [payment] = await query<{ status: string; escrow_id: string }>(
        t.databaseUrl,
        `SELECT status, escrow_id FROM job_payments WHERE job_id = $1`,
        [answer.items[index].job.job_id],
      );
      expect(payment.status).toBe('escrowed');
      expect(kinds(await pd.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create']);
    }
    // Held now: the batch's 0.0013 + 0.0014 and the single calls' 0.0013 + 0.0014 (the rest refused or unpaid).
    expect((await held()).eq(heldBefore.plus('0.0054'))).toBe(true);
  });

  it.each([
    ['not an array', { items: { payload: PAYLOAD } }],
    ['no items', { items: [] }],
    ['101 items', { items: Array.from({ length: 101 }, () => ({ payload: PAYLOAD, payment_amount: '0.001' })) }],
    ['an item that is not an object', { items: [[PAYLOAD]] }],
  ])('a malformed envelope (%s) is a 400 and nothing is written', async (_what, body) => {
    const [{ n: before }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
    const response = await t.http.post('/v1/jobs/batch').set('X-Api-Key', t.keys.client).send(body);
    expect({ status: response.status, code: response.body.code }).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    const [{ n: after }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
    expect(after).toBe(before);
  });

  it('100 paid jobs in one request: 100 jobs, 100 holds, one daemon call; an Idempotency-Key replays the answer and writes nothing more', async () => {
    const items = Array.from({ length: 100 }, (_, i) => ({
      payload: { ...PAYLOAD, parameters: { prompt: `item ${i}` } },
      payment_amount: '0.00001',
    }));
    const heldBefore = await held();
    const callsBefore = await createBatchCalls();
    const response = await batch(items, 'job-batch-100');
    expect(response.status).toBe(200);
    expect({ succeeded: response.body.succeeded, failed: response.body.failed }).toEqual({ succeeded: 100, failed: 0 });
    expect(
      response.body.items.every(
        (
          i: { status_code: number; job: { payment_status: string; payload: { parameters: { prompt: string } } } },
          index: number,
        ) =>
          i.status_code === 201 &&
          i.job.payment_status === 'escrowed' &&
          i.job.payload.parameters.prompt === `item ${index}`,
      ),
    ).toBe(true);
    expect(await createBatchCalls()).toBe(callsBefore + 1);
    expect((await held()).eq(heldBefore.plus(new Money('0.00001').times(100)))).toBe(true);

    const [{ n: jobsBefore }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
    const replay = await batch(items, 'job-batch-100');
    expect({ status: replay.status, replayed: replay.headers['idempotent-replayed'] }).toEqual({
      status: 200,
      replayed: 'true',
    });
    expect(replay.body).toEqual(response.body);
    const [{ n: jobsAfter }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
    expect(jobsAfter).toBe(jobsBefore);
  });

  it.each([
    ['U+0000', 'a\u0000b'],
    ['an unpaired surrogate', 'a\ud800b'],
  ])(
    '%s in a string (which PostgreSQL cannot store) is a 400 at parse time, single or batch, and nothing is written',
    async (_what, text) => {
      const [{ n: before }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
      const poisoned = { payload: { ...PAYLOAD, parameters: { prompt: text } }, payment_amount: '0.001' };
      const alone = await single(poisoned);
      const inBatch = await batch([{ payload: PAYLOAD, payment_amount: '0.001' }, poisoned]);
      expect([alone.status, alone.body.code, inBatch.status, inBatch.body.code]).toEqual([
        400,
        'VALIDATION_FAILED',
        400,
        'VALIDATION_FAILED',
      ]);
      const [{ n: after }] = await query<{ n: string }>(t.databaseUrl, `SELECT count(*) AS n FROM job`);
      expect(after).toBe(before);
    },
  );

  it('a daemon without the create-batch route (404): the batch is held one escrow per call, and so are later batches', async () => {
    const proxy = await startDaemonProxy(pd.daemon.endpoint.url);
    proxy.withoutRoutes((call) => call.path === '/api/v1/escrow/create-batch');
    const other = await startTestApp(
      {},
      { daemon: new WalletDaemonHelper({ url: proxy.url, token: pd.daemon.endpoint.token }) },
    );
    try {
      const calls = (path: string) => proxy.calls.filter((call) => call.path === path).length;
      const items = Array.from({ length: 3 }, () => ({ payload: PAYLOAD, payment_amount: '0.00002' }));
      for (const round of [1, 2]) {
        const response = await other.http.post('/v1/jobs/batch').set('X-Api-Key', other.keys.client).send({ items });
        expect(
          response.body.items.map((i: { status_code: number; job: { payment_status: string } }) => [
            i.status_code,
            i.job.payment_status,
          ]),
        ).toEqual(items.map(() => [201, 'escrowed']));
        expect({
          round,
          batchCalls: calls('/api/v1/escrow/create-batch'),
          singleCalls: calls('/api/v1/escrow/create'),
        }).toEqual({ round, batchCalls: 1, singleCalls: 3 * round });
      }
    } finally {
      await other.close();
      await proxy.close();
    }
  });

  it('only clients create jobs in batches', async () => {
    expect((await batch([{ payload: PAYLOAD }], undefined, 'miner')).status).toBe(403);
  });
});
