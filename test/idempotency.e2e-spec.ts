import { Money } from '../src/common/money';
import { IdempotencyService } from '../src/idempotency/idempotency.service';
import { KeyName, startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { claimJob, createPaidJob, kinds, paymentEvents, query, registerMiner } from './support/flow';

// Idempotency-Key on POST routes (docs/idempotency.md): the first answer is stored per
// (principal, method, path, key) and replayed with `Idempotent-Replayed: true`; another
// body under the same key is 422; a retry while the first still runs is 409. A private
// wallet daemon, so its latency can keep a first request running.
describe('Idempotency-Key', () => {
  let pd: PrivateDaemon;
  let t: TestApp;

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    t = await startTestApp({}, { daemon: pd.daemon });
    await registerMiner(t.http, t.keys.miner, await pd.daemon.newAddress());
  });

  afterEach(async () => {
    await pd.daemon.resetFaults();
    await pd.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await t?.close();
    await pd?.stop();
  });

  const post = (path: string, key: string, body: object, who: KeyName = 'client') =>
    t.http.post(path).set('X-Api-Key', t.keys[who]).set('Idempotency-Key', key).send(body);
  const count = async (sql: string, params: unknown[] = []) =>
    Number((await query<{ n: string }>(t.databaseUrl, sql, params))[0].n);
  const jobCount = () => count(`SELECT count(*) AS n FROM job`);
  const clientBalance = async () => new Money(await pd.daemon.balance(t.clientWallet));
  const paidJob = (amount: string, tag: string) => ({
    payload: { job_type: 'ai_inference', parameters: { prompt: tag } },
    payment_amount: amount,
  });

  function expectErrorShape(body: Record<string, unknown>, status: number, code: string): void {
    expect(body).toEqual({
      status_code: status,
      code,
      message: expect.any(String),
      details: expect.any(Object),
      request_id: expect.any(String),
    });
  }

  it('a replay returns the first status and body with Idempotent-Replayed: true and writes nothing more', async () => {
    const body = paidJob('0.0015', 'replay');
    const first = await post('/v1/jobs', 'replay-create', body);
    expect(first.status).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(first.body.payment_status).toBe('escrowed');
    const jobs = await jobCount();
    const balance = await clientBalance();

    const replay = await post('/v1/jobs', 'replay-create', body);
    expect(replay.status).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(first.body);
    // No second job, no second escrow.
    expect(await jobCount()).toBe(jobs);
    expect((await clientBalance()).eq(balance)).toBe(true);

    const paymentId = first.body.payment_id;
    const refund = await post(`/v1/payments/${paymentId}/refund`, 'replay-refund', { reason: 'not needed' });
    expect(refund.status).toBe(200);
    expect(refund.body.status).toBe('refunded');
    const refundReplay = await post(`/v1/payments/${paymentId}/refund`, 'replay-refund', { reason: 'not needed' });
    expect(refundReplay.status).toBe(200);
    expect(refundReplay.headers['idempotent-replayed']).toBe('true');
    expect(refundReplay.body).toEqual(refund.body);

    const events = await paymentEvents(t.http, t.keys.client, paymentId);
    expect(events.filter((e: { to: string }) => e.to === 'refunding')).toHaveLength(1);
    expect(events.filter((e: { to: string }) => e.to === 'refunded')).toHaveLength(1);
    expect(kinds(await pd.daemon.escrowTransfers(refund.body.escrow_id))).toEqual(['create', 'refund']);
    expect((await clientBalance()).eq(balance.plus('0.0015'))).toBe(true);
  });

  it('the same key with a different body is 422 IDEMPOTENCY_KEY_REUSED and writes nothing; key order in the body does not matter', async () => {
    const first = await post('/v1/jobs', 'reuse', { payload: { x: 1, y: 2 } });
    expect(first.status).toBe(201);
    const jobs = await jobCount();

    const other = await post('/v1/jobs', 'reuse', { payload: { x: 1, y: 3 } });
    expect(other.status).toBe(422);
    expectErrorShape(other.body, 422, 'IDEMPOTENCY_KEY_REUSED');
    expect(await jobCount()).toBe(jobs);

    // The same JSON with its keys in another order is the same request.
    const reordered = await post('/v1/jobs', 'reuse', { payload: { y: 2, x: 1 } });
    expect(reordered.status).toBe(201);
    expect(reordered.headers['idempotent-replayed']).toBe('true');
    expect(reordered.body.job_id).toBe(first.body.job_id);
    expect(await jobCount()).toBe(jobs);
  });

  it('10 concurrent requests with one key while the first is still running: exactly one runs, the rest are 409 IDEMPOTENCY_IN_PROGRESS or replays', async () => {
    const amount = '0.0017';
    const body = paidJob(amount, 'concurrent');
    const jobs = await jobCount();
    const balance = await clientBalance();

    await pd.daemon.setFaults({ latency_ms: 1500 }); // the escrow creation keeps the first request busy
    const responses = await Promise.all(Array.from({ length: 10 }, () => post('/v1/jobs', 'concurrent', body)));
    await pd.daemon.resetFaults();

    const ran = responses.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined);
    expect(ran).toHaveLength(1);
    const winner = ran[0].body;
    expect(winner.payment_status).toBe('escrowed');
    const others = responses.filter((r) => r !== ran[0]);
    for (const r of others) {
      const inProgress = r.status === 409 && r.body.code === 'IDEMPOTENCY_IN_PROGRESS';
      const replayed =
        r.status === 201 && r.headers['idempotent-replayed'] === 'true' && r.body.job_id === winner.job_id;
      expect({ status: r.status, code: r.body.code, inProgressOrReplay: inProgress || replayed }).toEqual({
        status: r.status,
        code: r.body.code,
        inProgressOrReplay: true,
      });
    }
    expect(others.filter((r) => r.status === 409).length).toBeGreaterThanOrEqual(1);

    // One job, one escrow, the amount held once.
    expect(await jobCount()).toBe(jobs + 1);
    expect((await clientBalance()).eq(balance.minus(amount))).toBe(true);
    const payment = (await t.http.get(`/v1/payments/${winner.payment_id}`).set('X-Api-Key', t.keys.client)).body;
    expect(kinds(await pd.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create']);

    // Once the first answered, the same key replays it.
    const after = await post('/v1/jobs', 'concurrent', body);
    expect(after.status).toBe(201);
    expect(after.headers['idempotent-replayed']).toBe('true');
    expect(after.body).toEqual(winner);
  });

  it('a refused first answer (4xx) is stored and replayed too, even after the refusal no longer applies', async () => {
    const job = await createPaidJob(t.http, t.keys.client, { amount: '0.0019' });
    // No miner assigned yet: nobody to release to.
    const first = await post(`/v1/payments/${job.payment_id}/release`, 'release-early', { reason: 'done' });
    expect(first.status).toBe(409);
    expectErrorShape(first.body, 409, 'PAYMENT_NO_PAYEE');

    await expect(claimJob(t.http, t.keys.miner, job.job_id)).resolves.toMatchObject({
      job_id: job.job_id,
      state: 'running',
    });
    const replay = await post(`/v1/payments/${job.payment_id}/release`, 'release-early', { reason: 'done' });
    expect({ status: replay.status, replayed: replay.headers['idempotent-replayed'], body: replay.body }).toEqual({
      status: 409,
      replayed: 'true',
      body: first.body,
    });
    const payment = (await t.http.get(`/v1/payments/${job.payment_id}`).set('X-Api-Key', t.keys.client)).body;
    expect(payment.status).toBe('escrowed');

    // A new key is a new request: now it runs.
    const fresh = await post(`/v1/payments/${job.payment_id}/release`, 'release-now', { reason: 'done' });
    expect(fresh.status).toBe(200);
    expect(fresh.body.status).toBe('released');
  });

  it('keys are scoped to (principal, method, path, key)', async () => {
    const key = 'scoped';
    const body = { payload: { n: 1 } };
    const mine = await post('/v1/jobs', key, body, 'client');
    expect(mine.status).toBe(201);

    // Another principal, same path and key: its own request.
    const theirs = await post('/v1/jobs', key, body, 'client2');
    expect(theirs.status).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.body.job_id).not.toBe(mine.body.job_id);
    expect(theirs.body.client_id).toBe(t.principals.client2);

    // Same principal and key, another path: its own request.
    const cancel = await post(`/v1/jobs/${mine.body.job_id}/cancel`, key, {}, 'client');
    expect(cancel.status).toBe(200);
    expect(cancel.headers['idempotent-replayed']).toBeUndefined();
    expect(cancel.body.state).toBe('canceled');

    // Another method (GET): the key plays no part.
    const read = await t.http
      .get(`/v1/jobs/${mine.body.job_id}`)
      .set('X-Api-Key', t.keys.client)
      .set('Idempotency-Key', key);
    expect(read.status).toBe(200);
    expect(read.headers['idempotent-replayed']).toBeUndefined();
    expect(read.body.state).toBe('canceled');

    // Same principal, method, path and key: the stored first answer.
    const again = await post('/v1/jobs', key, body, 'client');
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(mine.body);

    const rows = await query<{ principal_id: string; method: string; path: string }>(
      t.databaseUrl,
      `SELECT principal_id, method, path FROM idempotency_keys WHERE key = $1 ORDER BY principal_id, path`,
      [key],
    );
    expect(rows).toEqual([
      { principal_id: t.principals.client, method: 'POST', path: '/v1/jobs' },
      { principal_id: t.principals.client, method: 'POST', path: `/v1/jobs/${mine.body.job_id}/cancel` },
      { principal_id: t.principals.client2, method: 'POST', path: '/v1/jobs' },
    ]);
  });

  it('a key longer than 255 characters (or empty) is 400 and nothing runs; 255 characters is fine', async () => {
    const jobs = await jobCount();
    for (const key of ['k'.repeat(256), '']) {
      const refused = await post('/v1/jobs', key, { payload: { long: true } });
      expect({ length: key.length, status: refused.status }).toEqual({ length: key.length, status: 400 });
      expectErrorShape(refused.body, 400, 'VALIDATION_FAILED');
    }
    expect(await jobCount()).toBe(jobs);

    const longest = 'k'.repeat(255);
    const accepted = await post('/v1/jobs', longest, { payload: { long: true } });
    expect(accepted.status).toBe(201);
    const replay = await post('/v1/jobs', longest, { payload: { long: true } });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body.job_id).toBe(accepted.body.job_id);
    expect(await jobCount()).toBe(jobs + 1);
  });

  it('keys are kept at least 7 days; purgeExpired() removes exactly those past expires_at', async () => {
    const old = await post('/v1/jobs', 'purge-old', { payload: { purge: 1 } });
    const fresh = await post('/v1/jobs', 'purge-fresh', { payload: { purge: 2 } });
    expect([old.status, fresh.status]).toEqual([201, 201]);

    const shortLived = await count(
      `SELECT count(*) AS n FROM idempotency_keys WHERE expires_at < created_at + interval '7 days'`,
    );
    expect(shortLived).toBe(0);

    await query(
      t.databaseUrl,
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'purge-old'`,
    );
    const before = await count(`SELECT count(*) AS n FROM idempotency_keys`);
    await expect(t.app.get(IdempotencyService).purgeExpired()).resolves.toBe(1);
    expect(await count(`SELECT count(*) AS n FROM idempotency_keys`)).toBe(before - 1);
    expect(await count(`SELECT count(*) AS n FROM idempotency_keys WHERE key = 'purge-old'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM idempotency_keys WHERE key = 'purge-fresh'`)).toBe(1);

    // A purged key is forgotten: the same request runs again; the kept one still replays.
    const rerun = await post('/v1/jobs', 'purge-old', { payload: { purge: 1 } });
    expect(rerun.status).toBe(201);
    expect(rerun.headers['idempotent-replayed']).toBeUndefined();
    expect(rerun.body.job_id).not.toBe(old.body.job_id);
    const kept = await post('/v1/jobs', 'purge-fresh', { payload: { purge: 2 } });
    expect(kept.headers['idempotent-replayed']).toBe('true');
    expect(kept.body.job_id).toBe(fresh.body.job_id);
  });
});
