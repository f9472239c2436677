import { Money } from '../src/common/money';
import { JobsService } from '../src/jobs/jobs.service';
import { balance, escrowTransfers, newAddress } from './support/daemon';
import { moveDeadline, moveDeadlines, waitForDatabaseTime } from './support/deadlines';
import {
  Body,
  countRows,
  expectError,
  expectErrorShape,
  expectJobView,
  expectNoLeaks,
  expectStatus,
  ISO_UTC,
  JobsApi,
  PAYLOAD,
  query,
  useTestApp,
} from './support/jobs';

// Issue "Service foundation": the job lifecycle over HTTP against a real PostgreSQL.
// Each describe block has its own app and database, so one block's queued jobs never
// reach another block's miners.

describe('jobs: lifecycle', () => {
  const app = useTestApp();
  let api: JobsApi;
  let payoutAddress: string;
  beforeAll(async () => {
    api = new JobsApi(app());
    payoutAddress = await newAddress('BTC');
  });

  it('client creates a job: 201 JobView, snake_case, ISO timestamps, queued, no payment', async () => {
    const before = Date.now();
    const response = await api.createJobRaw('client', {
      payload: PAYLOAD,
      constraints: { gpu: 'a100' },
      ttl_seconds: 600,
    });

    expect(response.status).toBe(201);
    const job = response.body;
    expectJobView(job);
    expect(job).toMatchObject({
      client_id: app().principals.client,
      state: 'queued',
      payload: PAYLOAD,
      constraints: { gpu: 'a100' },
      ttl_seconds: 600,
      assigned_miner_id: null,
      result: null,
      error: null,
      completed_at: null,
      payment_id: null,
      payment_status: null,
      payment_amount: null,
      payment_currency: null,
    });
    const requested = Date.parse(job.requested_at);
    expect(requested).toBeGreaterThanOrEqual(before - 5_000);
    expect(requested).toBeLessThanOrEqual(Date.now() + 5_000);
    expect(Date.parse(job.expires_at) - requested).toBe(600_000);
    await expect(api.cancel('client', job.job_id).then((r) => r.status)).resolves.toBe(200);
  });

  it('defaults: constraints {} and ttl_seconds 900 when only payload is given', async () => {
    const job = await api.createJob('client', { payload: PAYLOAD });
    expect(job).toMatchObject({ constraints: {}, ttl_seconds: 900 });
    expect(Date.parse(job.expires_at) - Date.parse(job.requested_at)).toBe(900_000);
    await expect(api.cancel('client', job.job_id).then((r) => r.status)).resolves.toBe(200);
  });

  it('runs a job end to end: create → owner reads → miner registers, polls, completes', async () => {
    const created = await api.createJob('client');

    const read = await api.job('client', created.job_id);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created);

    const registered = await api.register('miner', payoutAddress);
    expect(registered.status).toBe(200);
    expect(registered.body).toMatchObject({ miner_id: app().principals.miner, payout_address: payoutAddress });
    expect(registered.body.registered_at).toMatch(ISO_UTC);

    const polled = await api.poll('miner');
    expect(polled.status).toBe(200);
    expectJobView(polled.body);
    expect(polled.body).toMatchObject({
      job_id: created.job_id,
      state: 'running',
      payload: PAYLOAD,
      assigned_miner_id: app().principals.miner,
    });
    expect(polled.body.started_at).toMatch(ISO_UTC);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({
      state: 'running',
      assigned_miner_id: app().principals.miner,
    });

    const result = { text: 'Hi there!', tokens: [1, 2, 3], nested: { ok: true } };
    const completed = await api.complete('miner', created.job_id, result, { duration_ms: 1200 });
    expect(completed.status).toBe(200);
    expectJobView(completed.body);
    expect(completed.body).toMatchObject({
      job_id: created.job_id,
      state: 'completed',
      result,
      error: null,
      assigned_miner_id: app().principals.miner,
    });
    expect(completed.body.completed_at).toMatch(ISO_UTC);

    const final = await api.jobView('client', created.job_id);
    expect(final).toMatchObject({ state: 'completed', result });
    await expect(api.jobView('admin', created.job_id)).resolves.toEqual(final);
    const [row] = await query(app(), `SELECT state, result, assigned_miner_id FROM job WHERE job_id = $1`, [
      created.job_id,
    ]);
    expect(row).toEqual({ state: 'completed', result, assigned_miner_id: app().principals.miner });
  });

  it('a miner reports a failure: poll → fail with error → failed', async () => {
    const created = await api.createJob('client');
    await expect(api.claim('miner')).resolves.toMatchObject({ job_id: created.job_id, state: 'running' });

    const failed = await api.fail('miner', created.job_id, 'CUDA out of memory');
    expect(failed.status).toBe(200);
    expect(failed.body).toMatchObject({
      job_id: created.job_id,
      state: 'failed',
      error: 'CUDA out of memory',
      result: null,
    });

    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({
      state: 'failed',
      error: 'CUDA out of memory',
    });
  });

  it('the owner cancels a queued job; it is never handed out', async () => {
    const created = await api.createJob('client');

    const canceled = await api.cancel('client', created.job_id);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ job_id: created.job_id, state: 'canceled', assigned_miner_id: null });

    await expect(api.poll('miner').then((r) => r.status)).resolves.toBe(204);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'canceled' });
  });

  it('the owner cancels a running job; the miner’s late result is refused', async () => {
    const created = await api.createJob('client');
    await expect(api.claim('miner')).resolves.toMatchObject({ job_id: created.job_id });

    const canceled = await api.cancel('client', created.job_id);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ state: 'canceled', assigned_miner_id: app().principals.miner });

    expectError(await api.complete('miner', created.job_id), 409, 'INVALID_JOB_TRANSITION');
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'canceled', result: null });
  });

  it('an admin cancels a client’s job', async () => {
    const created = await api.createJob('client');
    const canceled = await api.cancel('admin', created.job_id);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({
      job_id: created.job_id,
      state: 'canceled',
      client_id: app().principals.client,
    });
  });

  it('another client can neither read nor cancel the job (404, not 403)', async () => {
    const created = await api.createJob('client');
    expectError(await api.job('client2', created.job_id), 404, 'JOB_NOT_FOUND');
    expectError(await api.cancel('client2', created.job_id), 404, 'JOB_NOT_FOUND');
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'queued' });
    await api.cancelAllQueued();
  });

  it('a miner registering an invalid payout address is refused with 400', async () => {
    const response = await api.register('miner2', 'bcrt1qnot-an-address');
    expectError(response, 400);
    expect(Object.keys(response.body.details.fields ?? {})).toContain('payout_address');
  });
});

describe('jobs: illegal transitions are 409 with a stable code; final states never change', () => {
  const app = useTestApp();
  let api: JobsApi;
  beforeAll(() => {
    api = new JobsApi(app());
  });
  afterEach(async () => {
    await api.cancelAllQueued();
  });

  /** A job claimed by `miner` (running). */
  async function runningJob(): Promise<Body> {
    const created = await api.createJob('client');
    const claimed = await api.claim('miner');
    expect(claimed.job_id).toBe(created.job_id);
    return claimed;
  }

  it('completing or failing a queued job (nobody claimed it) → 409, job stays queued', async () => {
    const created = await api.createJob('client');

    const completed = expectError(await api.complete('miner', created.job_id), 409);
    expect(['JOB_NOT_ASSIGNED', 'INVALID_JOB_TRANSITION']).toContain(completed.code);
    const failed = expectError(await api.fail('miner', created.job_id), 409);
    expect(failed.code).toBe(completed.code);

    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({
      state: 'queued',
      result: null,
      error: null,
      assigned_miner_id: null,
    });
  });

  it('completing twice → 409 INVALID_JOB_TRANSITION; the first result stays', async () => {
    const job = await runningJob();
    expect((await api.complete('miner', job.job_id, { answer: 1 })).status).toBe(200);
    const before = await api.jobView('client', job.job_id);

    const again = expectError(await api.complete('miner', job.job_id, { answer: 2 }), 409, 'INVALID_JOB_TRANSITION');
    expect(again.details).toMatchObject({ job_id: job.job_id, state: 'completed' });

    await expect(api.jobView('client', job.job_id)).resolves.toEqual(before);
  });

  it('failing after completion → 409 INVALID_JOB_TRANSITION; still completed', async () => {
    const job = await runningJob();
    expect((await api.complete('miner', job.job_id, { answer: 1 })).status).toBe(200);
    const before = await api.jobView('client', job.job_id);

    expectError(await api.fail('miner', job.job_id, 'too late'), 409, 'INVALID_JOB_TRANSITION');
    await expect(api.jobView('client', job.job_id)).resolves.toEqual(before);
  });

  it('completing after a failure → 409 INVALID_JOB_TRANSITION; still failed', async () => {
    const job = await runningJob();
    expect((await api.fail('miner', job.job_id, 'boom')).status).toBe(200);
    const before = await api.jobView('client', job.job_id);

    expectError(await api.complete('miner', job.job_id), 409, 'INVALID_JOB_TRANSITION');
    expectError(await api.fail('miner', job.job_id, 'boom again'), 409, 'INVALID_JOB_TRANSITION');
    await expect(api.jobView('client', job.job_id)).resolves.toEqual(before);
  });

  it.each(['client', 'admin'] as const)(
    'canceling a completed job as %s → 409 INVALID_JOB_TRANSITION; still completed',
    async (who) => {
      const job = await runningJob();
      expect((await api.complete('miner', job.job_id)).status).toBe(200);
      const before = await api.jobView('client', job.job_id);

      const refused = expectError(await api.cancel(who, job.job_id), 409, 'INVALID_JOB_TRANSITION');
      expect(refused.details).toMatchObject({ state: 'completed' });
      await expect(api.jobView('client', job.job_id)).resolves.toEqual(before);
    },
  );

  it('canceling a failed job → 409 INVALID_JOB_TRANSITION', async () => {
    const job = await runningJob();
    expect((await api.fail('miner', job.job_id)).status).toBe(200);
    expectError(await api.cancel('client', job.job_id), 409, 'INVALID_JOB_TRANSITION');
    await expect(api.jobView('client', job.job_id)).resolves.toMatchObject({ state: 'failed' });
  });

  it('canceling twice → 409 INVALID_JOB_TRANSITION; completing or failing a canceled job → 409', async () => {
    const created = await api.createJob('client');
    expect((await api.cancel('client', created.job_id)).status).toBe(200);
    const before = await api.jobView('client', created.job_id);

    expectError(await api.cancel('client', created.job_id), 409, 'INVALID_JOB_TRANSITION');
    expect((await api.complete('miner', created.job_id)).status).toBe(409);
    expect((await api.fail('miner', created.job_id)).status).toBe(409);
    await expect(api.jobView('client', created.job_id)).resolves.toEqual(before);
  });

  it('another miner completing or failing a job not assigned to it → 409 JOB_NOT_ASSIGNED; the assignee still can', async () => {
    const job = await runningJob();

    expectError(await api.complete('miner2', job.job_id, { stolen: true }), 409, 'JOB_NOT_ASSIGNED');
    expectError(await api.fail('miner2', job.job_id, 'sabotage'), 409, 'JOB_NOT_ASSIGNED');
    await expect(api.jobView('client', job.job_id)).resolves.toMatchObject({
      state: 'running',
      result: null,
      error: null,
      assigned_miner_id: app().principals.miner,
    });

    const done = await api.complete('miner', job.job_id, { mine: true });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ state: 'completed', result: { mine: true } });
  });

  it('another miner reporting on a finished job → 409 JOB_NOT_ASSIGNED; nothing changes', async () => {
    const job = await runningJob();
    expect((await api.complete('miner', job.job_id)).status).toBe(200);
    const before = await api.jobView('client', job.job_id);

    expectError(await api.complete('miner2', job.job_id), 409, 'JOB_NOT_ASSIGNED');
    await expect(api.jobView('client', job.job_id)).resolves.toEqual(before);
  });

  it('a report without its result or error → 400 naming the field; the job stays running', async () => {
    const job = await runningJob();
    const noResult = expectError(
      await api.post('miner', `/v1/miners/jobs/${job.job_id}/result`, { metrics: {} }),
      400,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(noResult.details.fields)).toContain('result');
    const noError = expectError(
      await api.post('miner', `/v1/miners/jobs/${job.job_id}/fail`, {}),
      400,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(noError.details.fields)).toContain('error');
    await expect(api.jobView('client', job.job_id)).resolves.toMatchObject({
      state: 'running',
      result: null,
      error: null,
    });
    expect((await api.complete('miner', job.job_id)).status).toBe(200);
  });

  it('reporting on a job that does not exist → 404 JOB_NOT_FOUND', async () => {
    const missing = '01890000-0000-7000-8000-000000000000';
    expectError(await api.complete('miner', missing), 404, 'JOB_NOT_FOUND');
    expectError(await api.fail('miner', missing), 404, 'JOB_NOT_FOUND');
    expectError(await api.cancel('client', missing), 404, 'JOB_NOT_FOUND');
  });

  it('a completed job is not handed out again', async () => {
    const job = await runningJob();
    expect((await api.complete('miner', job.job_id)).status).toBe(200);
    await expect(api.poll('miner').then((r) => r.status)).resolves.toBe(204);
    await expect(api.poll('miner2').then((r) => r.status)).resolves.toBe(204);
  });
});

describe('jobs: concurrent polls', () => {
  const app = useTestApp();

  it('10 jobs, 20 polls at once from two miners: each job is handed out exactly once, the rest get 204', async () => {
    const api = new JobsApi(app());
    const created: Body[] = [];
    for (let i = 0; i < 10; i++) created.push(await api.createJob('client', { payload: { ...PAYLOAD, n: i } }));

    const pollers = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'miner' : 'miner2'));
    const responses = await Promise.all(pollers.map((who) => api.poll(who)));

    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 204)).toHaveLength(10);

    const handedOut = responses.flatMap((r, i) =>
      r.status === 200 ? [{ job_id: r.body.job_id as string, miner: app().principals[pollers[i]], body: r.body }] : [],
    );
    const ids = handedOut.map((h) => h.job_id);
    expect(new Set(ids).size).toBe(10);
    expect([...ids].sort()).toEqual(created.map((j) => j.job_id).sort());
    for (const h of handedOut) expect(h.body).toMatchObject({ state: 'running', assigned_miner_id: h.miner });

    // The database agrees with what each miner was told.
    const rows = await query<{ job_id: string; state: string; assigned_miner_id: string }>(
      app(),
      `SELECT job_id, state, assigned_miner_id FROM job ORDER BY job_id`,
    );
    expect(rows).toHaveLength(10);
    expect(rows).toEqual(
      expect.arrayContaining(
        handedOut.map((h) => ({ job_id: h.job_id, state: 'running', assigned_miner_id: h.miner })),
      ),
    );
  });
});

describe('jobs: TTL expiry', () => {
  const app = useTestApp();
  let api: JobsApi;
  beforeAll(() => {
    api = new JobsApi(app());
  });
  const expireDue = () => app().app.get(JobsService).expireDue();

  it('a queued job past its ttl is expired by the sweep and never dispatched', async () => {
    const created = await api.createJob('client', { payload: PAYLOAD, ttl_seconds: 1 });
    await waitForDatabaseTime(app().databaseUrl, created.expires_at);

    // Past its deadline it is not dispatchable, even before the sweep runs.
    await expect(api.poll('miner').then((r) => r.status)).resolves.toBe(204);

    await expect(expireDue()).resolves.toBeGreaterThanOrEqual(1);
    const expired = await api.jobView('client', created.job_id);
    expect(expired).toMatchObject({ state: 'expired', assigned_miner_id: null, result: null });
    expect(expired.completed_at).toMatch(ISO_UTC);

    await expect(api.poll('miner').then((r) => r.status)).resolves.toBe(204);
    expectError(await api.cancel('client', created.job_id), 409, 'INVALID_JOB_TRANSITION');
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'expired' });
  });

  it('a result for a running paid job after its deadline is refused (409) before the sweep, and pays nothing: the escrow goes back to the client', async () => {
    const payee = await newAddress('BTC');
    expect((await api.register('miner', payee)).status).toBe(200);
    const clientBefore = await balance(app().clientWallet);
    const created = await api.createJob('client', { payload: PAYLOAD, ttl_seconds: 600, payment_amount: '0.0015' });
    expect(created).toMatchObject({ payment_status: 'escrowed', payment_amount: '0.00150000' });
    await expect(api.claim('miner')).resolves.toMatchObject({ job_id: created.job_id, state: 'running' });
    // Its TTL runs out (the escrow's expiry is still ahead): the deadline moves into the past on the database's clock.
    await moveDeadline(app().databaseUrl, created.job_id, -1_000);

    const late = expectError(await api.complete('miner', created.job_id, { late: true }), 409);
    expect(['JOB_EXPIRED', 'INVALID_JOB_TRANSITION']).toContain(late.code);
    const lateFailure = expectError(await api.fail('miner', created.job_id, 'late'), 409);
    expect(['JOB_EXPIRED', 'INVALID_JOB_TRANSITION']).toContain(lateFailure.code);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({
      state: 'running',
      result: null,
      payment_status: 'escrowed',
    });

    await expect(expireDue()).resolves.toBeGreaterThanOrEqual(1);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({
      state: 'expired',
      result: null,
      payment_status: 'refunded',
    });
    expect((await api.complete('miner', created.job_id, { late: true })).status).toBe(409);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'expired', result: null });

    // Nothing paid, by the daemon's ledger: one hold and its refund to the client, the payee never credited.
    const payment = expectStatus(await api.get('client', `/v1/payments/${created.payment_id}`), 200, 'GET payment');
    expect(payment).toMatchObject({ status: 'refunded', settle_reason: 'job_expired', transaction_hash: null });
    expect((await escrowTransfers(payment.escrow_id)).map((x) => x.kind).sort()).toEqual(['create', 'refund']);
    expect(await balance(payee)).toBe('0.00000000');
    expect(await balance(app().clientWallet)).toBe(clientBefore);
  });

  it('the sweep leaves final states alone and is safe to run twice', async () => {
    const done = await api.createJob('client', { payload: PAYLOAD, ttl_seconds: 600 });
    await expect(api.claim('miner')).resolves.toMatchObject({ job_id: done.job_id });
    expect((await api.complete('miner', done.job_id, { fast: true })).status).toBe(200);
    const canceled = await api.createJob('client', { payload: PAYLOAD, ttl_seconds: 600 });
    expect((await api.cancel('client', canceled.job_id)).status).toBe(200);
    // Both deadlines pass after the jobs ended.
    await moveDeadlines(app().databaseUrl, [done.job_id, canceled.job_id], [-1_000, -1_000]);
    const before = [await api.jobView('client', done.job_id), await api.jobView('client', canceled.job_id)];
    expect(before.map((job) => job.state)).toEqual(['completed', 'canceled']);

    await expect(expireDue()).resolves.toBe(0);
    await expect(expireDue()).resolves.toBe(0);
    await expect(api.jobView('client', done.job_id)).resolves.toEqual(before[0]);
    await expect(api.jobView('client', canceled.job_id)).resolves.toEqual(before[1]);
  });

  it('a job within its ttl is not expired by the sweep', async () => {
    const created = await api.createJob('client', { payload: PAYLOAD, ttl_seconds: 60 });
    await expect(expireDue()).resolves.toBe(0);
    await expect(api.jobView('client', created.job_id)).resolves.toMatchObject({ state: 'queued' });
    await api.cancelAllQueued();
  });
});

describe('jobs: validation → 400 with the offending fields, nothing written', () => {
  const app = useTestApp();
  let api: JobsApi;
  beforeAll(() => {
    api = new JobsApi(app());
  });

  const counts = () => countRows(app(), 'job', 'job_payments', 'payment_events');

  it.each<{ name: string; body: object; field: string }>([
    { name: 'missing payload', body: { constraints: {} }, field: 'payload' },
    { name: 'payload null', body: { payload: null }, field: 'payload' },
    { name: 'payload a string', body: { payload: 'run this' }, field: 'payload' },
    { name: 'payload an array', body: { payload: [1, 2] }, field: 'payload' },
    { name: 'payload a number', body: { payload: 42 }, field: 'payload' },
    { name: 'constraints not an object', body: { payload: PAYLOAD, constraints: 'fast' }, field: 'constraints' },
    { name: 'an unknown field', body: { payload: PAYLOAD, priority: 'high' }, field: 'priority' },
    { name: 'ttl_seconds 0', body: { payload: PAYLOAD, ttl_seconds: 0 }, field: 'ttl_seconds' },
    { name: 'ttl_seconds -1', body: { payload: PAYLOAD, ttl_seconds: -1 }, field: 'ttl_seconds' },
    { name: 'ttl_seconds "abc"', body: { payload: PAYLOAD, ttl_seconds: 'abc' }, field: 'ttl_seconds' },
    { name: 'ttl_seconds 1.5', body: { payload: PAYLOAD, ttl_seconds: 1.5 }, field: 'ttl_seconds' },
  ])('$name → 400 VALIDATION_FAILED naming $field', async ({ body, field }) => {
    const before = await counts();
    const response = await api.createJobRaw('client', body);

    const error = expectError(response, 400, 'VALIDATION_FAILED');
    expect(Object.keys(error.details.fields ?? {})).toContain(field);
    await expect(counts()).resolves.toEqual(before);
  });

  it.each<[string, unknown]>([
    ['an exponent form "1e-3"', '1e-3'],
    ['zero', 0],
    ['"0"', '0'],
    ['negative -1', -1],
    ['negative "-0.001"', '-0.001'],
    ['more decimals than the currency "0.000000001"', '0.000000001'],
    ['not a number "abc"', 'abc'],
    ['an empty string', ''],
    ['NaN as text', 'NaN'],
    ['a boolean', true],
  ])('payment_amount %s → 400 naming payment_amount, no job or payment written', async (_, amount) => {
    const before = await counts();
    const response = await api.createJobRaw('client', { payload: PAYLOAD, payment_amount: amount });

    const error = expectError(response, 400);
    expect(['VALIDATION_FAILED', 'INVALID_AMOUNT']).toContain(error.code);
    expect(Object.keys(error.details.fields ?? {})).toContain('payment_amount');
    await expect(counts()).resolves.toEqual(before);
  });

  it('a malformed JSON body → 400 VALIDATION_FAILED in the error shape, nothing written', async () => {
    const before = await counts();
    const response = await api.createJobRaw('client', '{"payload": {"job_type": "ai_inference",');
    expectError(response, 400, 'VALIDATION_FAILED');
    await expect(counts()).resolves.toEqual(before);
  });

  it('a body that is not a JSON object (an array) → 400, nothing written', async () => {
    const before = await counts();
    expectError(await api.createJobRaw('client', '[{"payload": {}}]'), 400);
    await expect(counts()).resolves.toEqual(before);
  });

  it('several bad fields at once are all named', async () => {
    const response = await api.createJobRaw('client', { payload: 'x', ttl_seconds: 0, extra: 1 });
    const error = expectError(response, 400, 'VALIDATION_FAILED');
    expect(Object.keys(error.details.fields)).toEqual(expect.arrayContaining(['payload', 'ttl_seconds', 'extra']));
  });

  it('a valid request after all of these writes exactly one job', async () => {
    const before = await counts();
    await api.createJob('client', { payload: PAYLOAD });
    const after = await counts();
    expect(after.job).toBe(before.job + 1);
    expect(after.job_payments).toBe(before.job_payments);
  });
});

describe('jobs: list', () => {
  const app = useTestApp();
  let api: JobsApi;
  const mine: string[] = []; // client's job ids in creation order
  const theirs: string[] = []; // client2's
  beforeAll(async () => {
    api = new JobsApi(app());
    for (let i = 0; i < 25; i++) mine.push((await api.createJob('client', { payload: { ...PAYLOAD, n: i } })).job_id);
    for (let i = 0; i < 2; i++) theirs.push((await api.createJob('client2', { payload: { ...PAYLOAD, n: i } })).job_id);
  });

  async function page(who: 'client' | 'client2' | 'admin', query: Record<string, string | number>): Promise<Body> {
    return expectStatus(await api.list(who, query), 200, `list as ${who}`);
  }

  it('pages a client’s 25 jobs by 10: 10/10/5, newest first, no duplicates or gaps, next_cursor null at the end', async () => {
    const first = await page('client', { limit: 10 });
    expect(first.items).toHaveLength(10);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await page('client', { limit: 10, cursor: first.next_cursor });
    expect(second.items).toHaveLength(10);
    expect(second.next_cursor).toEqual(expect.any(String));
    const third = await page('client', { limit: 10, cursor: second.next_cursor });
    expect(third.items).toHaveLength(5);
    expect(third.next_cursor).toBeNull();

    const items: Body[] = [...first.items, ...second.items, ...third.items];
    items.forEach(expectJobView);
    const ids = items.map((j) => j.job_id);
    expect(ids).toEqual([...mine].reverse());
    for (let i = 1; i < items.length; i++) {
      expect(Date.parse(items[i - 1].requested_at)).toBeGreaterThanOrEqual(Date.parse(items[i].requested_at));
    }
  });

  it('a client sees only its own jobs', async () => {
    const own = await page('client2', { limit: 100 });
    expect(own.items.map((j: Body) => j.job_id)).toEqual([...theirs].reverse());
    expect(own.items.every((j: Body) => j.client_id === app().principals.client2)).toBe(true);
    expect(own.next_cursor).toBeNull();

    const other = await page('client', { limit: 100 });
    expect(other.items.map((j: Body) => j.job_id)).not.toEqual(expect.arrayContaining([theirs[0]]));
    expect(other.items.every((j: Body) => j.client_id === app().principals.client)).toBe(true);
  });

  it('an admin sees every client’s jobs, newest first', async () => {
    const all = await page('admin', { limit: 100 });
    expect(all.items.map((j: Body) => j.job_id)).toEqual([...mine, ...theirs].reverse());
    expect(all.next_cursor).toBeNull();
  });

  it('jobs created between pages neither repeat nor open gaps in the pages already started', async () => {
    const first = await page('client', { limit: 10 });
    const added = await api.createJob('client', { payload: { ...PAYLOAD, late: true } });
    const second = await page('client', { limit: 10, cursor: first.next_cursor });
    const third = await page('client', { limit: 10, cursor: second.next_cursor });

    const ids = [...first.items, ...second.items, ...third.items].map((j: Body) => j.job_id);
    expect(ids).toEqual([...mine].reverse());
    expect(ids).not.toContain(added.job_id);
    // A fresh first page starts with it.
    await expect(page('client', { limit: 1 })).resolves.toMatchObject({ items: [{ job_id: added.job_id }] });
    expect((await api.cancel('client', added.job_id)).status).toBe(200);
    mine.push(added.job_id);
  });

  it.each<{ name: string; query: Record<string, string | number>; field: string }>([
    { name: 'limit 101', query: { limit: 101 }, field: 'limit' },
    { name: 'limit 0', query: { limit: 0 }, field: 'limit' },
    { name: 'limit -5', query: { limit: -5 }, field: 'limit' },
    { name: 'limit "ten"', query: { limit: 'ten' }, field: 'limit' },
    { name: 'a garbage cursor', query: { cursor: 'not-a-cursor!!' }, field: 'cursor' },
    {
      name: 'a base64 cursor of something else',
      query: { cursor: Buffer.from('hello world').toString('base64url') },
      field: 'cursor',
    },
    { name: 'an unknown query parameter', query: { sort: 'asc' }, field: 'sort' },
  ])('$name → 400 VALIDATION_FAILED naming $field', async ({ query, field }) => {
    const error = expectError(await api.list('client', query), 400, 'VALIDATION_FAILED');
    expect(Object.keys(error.details.fields ?? {})).toContain(field);
  });

  it('limit 100 is allowed', async () => {
    await expect(page('admin', { limit: 100 }).then((p) => p.items.length)).resolves.toBeGreaterThanOrEqual(27);
  });
});

describe('jobs: the one error shape', () => {
  const app = useTestApp();
  let api: JobsApi;
  beforeAll(() => {
    api = new JobsApi(app());
  });

  it('an unknown route → 404 in the error shape', async () => {
    const response = await app().http.get('/v1/nothing-here').set('X-Api-Key', app().keys.client);
    expectError(response, 404);
    const anonymous = await app().http.get('/no/such/route');
    expectError(anonymous, 404);
  });

  it('an unknown method on a known path → 404 or 405 in the error shape', async () => {
    const response = await app().http.delete('/v1/jobs').set('X-Api-Key', app().keys.client);
    expect([404, 405]).toContain(response.status);
    expectErrorShape(response.body, response.status);
  });

  it('401, 403, 404, 409 and 400 all share the shape', async () => {
    const created = await api.createJob('client');
    expectError(await app().http.get('/v1/jobs'), 401, 'UNAUTHORIZED');
    expectError(await app().http.get('/v1/jobs').set('X-Api-Key', 'wrong-key-000000'), 401, 'UNAUTHORIZED');
    expectError(await api.createJobRaw('miner', { payload: PAYLOAD }), 403, 'FORBIDDEN');
    expectError(await api.job('client2', created.job_id), 404, 'JOB_NOT_FOUND');
    expect((await api.cancel('client', created.job_id)).status).toBe(200);
    expectError(await api.cancel('client', created.job_id), 409, 'INVALID_JOB_TRANSITION');
    expectError(await api.createJobRaw('client', {}), 400, 'VALIDATION_FAILED');
  });

  it('every error carries a request id of its own', async () => {
    const a = await app().http.get('/v1/jobs');
    const b = await app().http.get('/v1/jobs');
    expect(a.body.request_id).not.toBe(b.body.request_id);
  });

  it.each([
    ['GET', '/v1/jobs/not-a-uuid', 'client'],
    ['GET', "/v1/jobs/1'%20OR%20'1'='1", 'client'],
    ['POST', '/v1/jobs/not-a-uuid/cancel', 'client'],
    ['POST', '/v1/miners/jobs/not-a-uuid/result', 'miner'],
    ['POST', '/v1/miners/jobs/not-a-uuid/fail', 'miner'],
    ['GET', '/v1/jobs/not-a-uuid/payment', 'client'],
    ['GET', '/v1/payments/not-a-uuid', 'client'],
    ['GET', '/v1/payments/not-a-uuid/receipt', 'client'],
    ['GET', '/v1/payments/not-a-uuid/events', 'client'],
    ['POST', '/v1/payments/not-a-uuid/release', 'client'],
    ['POST', '/v1/payments/not-a-uuid/refund', 'client'],
  ] as const)('%s %s with a malformed id → 404, never a 500 or SQL text', async (method, path, who) => {
    const body = path.endsWith('/result') ? { result: { ok: true } } : path.endsWith('/fail') ? { error: 'x' } : {};
    const response = method === 'GET' ? await api.get(who, path) : await api.post(who, path, body);
    expectError(response, 404);
    expectNoLeaks(response.body);
  });

  it('a body that is too large → 413 in the error shape, nothing written', async () => {
    const before = await countRows(app(), 'job');
    const response = await api.createJobRaw('client', { payload: { blob: 'x'.repeat(300 * 1024) } });
    expectError(response, 413);
    await expect(countRows(app(), 'job')).resolves.toEqual(before);
  });
});

describe('jobs: Idempotency-Key on POST /v1/jobs', () => {
  const app = useTestApp();
  let api: JobsApi;
  beforeAll(() => {
    api = new JobsApi(app());
  });
  const counts = () => countRows(app(), 'job', 'job_payments');

  it('a replay returns the same status and body with Idempotent-Replayed: true, and creates one job', async () => {
    const before = await counts();
    const body = { payload: { ...PAYLOAD, attempt: 'replay' }, ttl_seconds: 300 };

    const first = await api.createJobRaw('client', body, { 'Idempotency-Key': 'create-job-1' });
    expect(first.status).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();

    const second = await api.createJobRaw('client', body, { 'Idempotency-Key': 'create-job-1' });
    expect(second.status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);

    await expect(counts()).resolves.toEqual({ ...before, job: before.job + 1 });
    await expect(
      api.list('client', { limit: 100 }).then((r) => r.body.items.map((j: Body) => j.job_id)),
    ).resolves.toEqual([first.body.job_id]);
  });

  it('the same body with its keys in another order is the same request (replayed)', async () => {
    const first = await api.createJobRaw(
      'client',
      { ttl_seconds: 300, payload: { b: 2, a: 1 } },
      { 'Idempotency-Key': 'order-1' },
    );
    expect(first.status).toBe(201);
    const second = await api.createJobRaw('client', '{"payload": {"a": 1, "b": 2}, "ttl_seconds": 300}', {
      'Idempotency-Key': 'order-1',
    });
    expect(second.status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body.job_id).toBe(first.body.job_id);
  });

  it('the same key with a different body → 422 IDEMPOTENCY_KEY_REUSED, nothing created', async () => {
    const first = await api.createJobRaw('client', { payload: { v: 1 } }, { 'Idempotency-Key': 'reused-1' });
    expect(first.status).toBe(201);
    const before = await counts();

    const reused = await api.createJobRaw('client', { payload: { v: 2 } }, { 'Idempotency-Key': 'reused-1' });
    expectError(reused, 422, 'IDEMPOTENCY_KEY_REUSED');
    await expect(counts()).resolves.toEqual(before);
  });

  it('keys are scoped per principal: client2 with the same key and body creates its own job', async () => {
    const body = { payload: { ...PAYLOAD, shared: true } };
    const mine = await api.createJobRaw('client', body, { 'Idempotency-Key': 'shared-key' });
    expect(mine.status).toBe(201);

    const theirs = await api.createJobRaw('client2', body, { 'Idempotency-Key': 'shared-key' });
    expect(theirs.status).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.body.job_id).not.toBe(mine.body.job_id);
    expect(theirs.body.client_id).toBe(app().principals.client2);

    // And each principal's replay returns its own job.
    const mineAgain = await api.createJobRaw('client', body, { 'Idempotency-Key': 'shared-key' });
    expect(mineAgain.body.job_id).toBe(mine.body.job_id);
    const theirsAgain = await api.createJobRaw('client2', body, { 'Idempotency-Key': 'shared-key' });
    expect(theirsAgain.body.job_id).toBe(theirs.body.job_id);
  });

  it('a paid job replayed: one job, one payment, escrowed once (one hold at the daemon)', async () => {
    const before = await counts();
    const walletBefore = new Money(await balance(app().clientWallet));
    const body = { payload: PAYLOAD, payment_amount: '0.001' };
    const first = await api.createJobRaw('client', body, { 'Idempotency-Key': 'paid-1' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      payment_status: 'escrowed',
      payment_amount: '0.00100000',
      payment_currency: 'BTC',
    });

    const second = await api.createJobRaw('client', body, { 'Idempotency-Key': 'paid-1' });
    expect(second.status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body.payment_id).toBe(first.body.payment_id);
    await expect(counts()).resolves.toEqual({ job: before.job + 1, job_payments: before.job_payments + 1 });

    // At the daemon: the client's wallet (this app's alone) paid for exactly one hold, and that escrow holds it.
    const payment = expectStatus(await api.get('client', `/v1/payments/${first.body.payment_id}`), 200, 'GET payment');
    const transfers = await escrowTransfers(payment.escrow_id);
    expect(transfers.map((x) => ({ kind: x.kind, amount: x.amount }))).toEqual([
      { kind: 'create', amount: '0.00100000' },
    ]);
    expect(new Money(await balance(app().clientWallet)).eq(walletBefore.minus('0.001'))).toBe(true);
  });

  it('a key longer than 255 characters → 400, nothing created', async () => {
    const before = await counts();
    expectError(await api.createJobRaw('client', { payload: PAYLOAD }, { 'Idempotency-Key': 'k'.repeat(256) }), 400);
    await expect(counts()).resolves.toEqual(before);
  });
});
