import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { Money } from '../src/common/money';
import { JobsService } from '../src/jobs/jobs.service';
import { PaymentsService } from '../src/payments/payments.service';
import { startTestApp, TestApp } from './support/app';
import { FaultSettings, PrivateDaemon, startPrivateDaemon, WalletDaemonHelper } from './support/daemon';
import {
  createPaidJob,
  getJob,
  getPayment,
  kinds,
  mapConcurrent,
  metricValue,
  paymentEvents,
  pollJob,
  query,
  registerMiner,
  sleepUntil,
  sumSamples,
  waitFor,
} from './support/flow';
import { startDaemonProxy } from './support/daemon-proxy';
import { CoordinatorProcess, spawnCoordinator, stopAllCoordinators } from './support/processes';

// Failure recovery: whatever fails — the wallet daemon, the coordinator process itself —
// every decided payment is completed exactly once, and every payment ends in a final
// status with its money where that status says. A private wallet daemon for fault
// injection; spawned coordinator processes for crashes and multi-instance sweeps.
describe('recovery', () => {
  let pd: PrivateDaemon;
  let daemon: WalletDaemonHelper;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    daemon = pd.daemon;
  });

  afterEach(async () => {
    await daemon.resetFaults();
    await daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await stopAllCoordinators();
    for (const app of apps) await app.close().catch(() => undefined);
    await pd?.stop();
  });

  async function startApp(env: Record<string, string>): Promise<TestApp> {
    const app = await startTestApp(env, { daemon });
    apps.push(app);
    return app;
  }

  const statusOf = async (databaseUrl: string, paymentId: string): Promise<string> =>
    (
      await query<{ status: string }>(databaseUrl, `SELECT status FROM job_payments WHERE payment_id = $1`, [paymentId])
    )[0].status;

  describe('wallet daemon down (in-process app, no client retries, 200 ms lease)', () => {
    let t: TestApp;
    let payout: string;

    beforeAll(async () => {
      // A short breaker cooldown: each outage opens the provider's circuit, and the daemon's
      // return is then noticed by the first probe after it, not 10 s later.
      t = await startApp({
        WALLET_DAEMON_RETRIES: '0',
        SETTLEMENT_LEASE_MS: '200',
        PROVIDER_BREAKER_COOLDOWN_MS: '200',
      });
      payout = await daemon.newAddress();
      await registerMiner(t.http, t.keys.miner, payout);
    });

    const redriveDue = () => t.app.get(PaymentsService).redriveDue();

    /**
     * One payment in each phase while the daemon misbehaves: a creation, a release (the
     * miner's result) and a refund (the client's). Then the daemon comes back and the
     * re-drive worker finishes each of them exactly once.
     */
    async function outage(faults: Partial<FaultSettings>): Promise<void> {
      const amounts = { create: '0.0021', release: '0.0022', refund: '0.0023' };
      const clientBefore = new Money(await daemon.balance(t.clientWallet));
      const payoutBefore = new Money(await daemon.balance(payout));

      const toRelease = await createPaidJob(t.http, t.keys.client, { amount: amounts.release });
      await expect(pollJob(t.http, t.keys.miner)).resolves.toMatchObject({ job_id: toRelease.job_id });
      const toRefund = await createPaidJob(t.http, t.keys.client, { amount: amounts.refund });
      expect([toRelease.payment_status, toRefund.payment_status]).toEqual(['escrowed', 'escrowed']);

      await daemon.setFaults(faults);

      const created = await createPaidJob(t.http, t.keys.client, { amount: amounts.create });
      expect(created).toMatchObject({ state: 'queued', payment_status: 'pending' });
      const result = await t.http
        .post(`/v1/miners/jobs/${toRelease.job_id}/result`)
        .set('X-Api-Key', t.keys.miner)
        .send({ result: { ok: true } });
      expect(result.status).toBe(200);
      expect(result.body).toMatchObject({ state: 'completed', payment_status: 'releasing' });
      const refund = await t.http
        .post(`/v1/payments/${toRefund.payment_id}/refund`)
        .set('X-Api-Key', t.keys.client)
        .send({ reason: 'changed my mind' });
      expect(refund.status).toBe(200);
      expect(refund.body.status).toBe('refunding');

      const ids = {
        create: created.payment_id as string,
        release: toRelease.payment_id as string,
        refund: toRefund.payment_id as string,
      };
      const statuses = async () => ({
        create: await statusOf(t.databaseUrl, ids.create),
        release: await statusOf(t.databaseUrl, ids.release),
        refund: await statusOf(t.databaseUrl, ids.refund),
      });
      const waiting = { create: 'pending', release: 'releasing', refund: 'refunding' };
      expect(await statuses()).toEqual(waiting);

      // Re-driven while the daemon is still down: nothing is lost, nothing flips, the failures are counted.
      await sleep(600);
      await expect(redriveDue()).resolves.toBeGreaterThanOrEqual(3);
      expect(await statuses()).toEqual(waiting);
      const rows = await query<{ attempts: number; last_error: string | null }>(
        t.databaseUrl,
        `SELECT attempts, last_error FROM job_payments WHERE payment_id = ANY($1::uuid[])`,
        [Object.values(ids)],
      );
      for (const row of rows) {
        expect(row.attempts).toBeGreaterThanOrEqual(1);
        expect(row.last_error).toEqual(expect.any(String));
      }
      // What an operator sees meanwhile: one payment waiting on the daemon in each status.
      await t.app.get(PaymentsService).observeBacklog();
      for (const status of ['pending', 'releasing', 'refunding']) {
        await expect(metricValue(t.http, 'payments_awaiting_wallet_daemon', { status })).resolves.toBe(1);
      }

      // The daemon is back. Re-drive (waiting out lease and backoff) until each has its outcome.
      await daemon.resetFaults();
      const done = { create: 'escrowed', release: 'released', refund: 'refunded' };
      await waitFor(
        'every payment to reach its outcome',
        async () => {
          await redriveDue();
          const now = await statuses();
          return JSON.stringify(now) === JSON.stringify(done) && now;
        },
        20_000,
        250,
      );
      // The escrow created late is an ordinary one: the client cancels and gets it back.
      const canceled = await t.http.post(`/v1/jobs/${created.job_id}/cancel`).set('X-Api-Key', t.keys.client).send({});
      expect(canceled.status).toBe(200);
      expect(canceled.body).toMatchObject({ state: 'canceled', payment_status: 'refunded' });

      // Exactly once at the daemon: one hold and one settlement per escrow.
      const expected = { create: ['create', 'refund'], release: ['create', 'release'], refund: ['create', 'refund'] };
      for (const phase of ['create', 'release', 'refund'] as const) {
        const payment = await getPayment(t.http, t.keys.client, ids[phase]);
        expect({ phase, transfers: kinds(await daemon.escrowTransfers(payment.escrow_id)) }).toEqual({
          phase,
          transfers: expected[phase],
        });
        const events = await paymentEvents(t.http, t.keys.client, ids[phase]);
        const arrivals = events.map((e: { to: string }) => e.to);
        expect({ phase, arrivals }).toEqual({
          phase,
          arrivals: [
            'pending',
            'escrowed',
            phase === 'release' ? 'releasing' : 'refunding',
            phase === 'release' ? 'released' : 'refunded',
          ],
        });
      }
      expect(new Money(await daemon.balance(payout)).eq(payoutBefore.plus(amounts.release))).toBe(true);
      expect(new Money(await daemon.balance(t.clientWallet)).eq(clientBefore.minus(amounts.release))).toBe(true);
      await t.app.get(PaymentsService).observeBacklog();
      await expect(metricValue(t.http, 'payments_awaiting_wallet_daemon')).resolves.toBe(0);
    }

    it('503s during create, release and refund: pending/releasing/refunding until the daemon is back, then each completes exactly once', async () => {
      await outage({ fail_rate: 1 });

      await expect(
        metricValue(t.http, 'settlement_failures_total', { kind: 'release' }),
      ).resolves.toBeGreaterThanOrEqual(1);
      await expect(
        metricValue(t.http, 'settlement_failures_total', { kind: 'refund' }),
      ).resolves.toBeGreaterThanOrEqual(1);
      for (const status of ['pending', 'releasing', 'refunding']) {
        await expect(metricValue(t.http, 'settlement_retries_total', { status })).resolves.toBeGreaterThanOrEqual(1);
      }
      for (const call of ['escrow_create', 'escrow_release', 'escrow_refund']) {
        await expect(
          metricValue(t.http, 'wallet_daemon_errors_total', { call, kind: 'http_503' }),
        ).resolves.toBeGreaterThanOrEqual(1);
      }
    });

    it('answers lost after the daemon did the work (drop): retried with the same keys, each applied exactly once', async () => {
      await outage({ drop_rate: 1 });
    });

    it('a creation not escrowed by its deadline becomes failed, its job failed with an explanatory error, and any hold is given straight back', async () => {
      const clientBefore = new Money(await daemon.balance(t.clientWallet));
      await daemon.setFaults({ fail_rate: 1 });
      const job = await createPaidJob(t.http, t.keys.client, { amount: '0.0031', escrow_timeout_seconds: 2 });
      expect(job.payment_status).toBe('pending');

      await sleepUntil(Date.parse(job.expires_at) + 200);
      await t.app.get(JobsService).expireDue();
      await redriveDue();
      const whileDown = await getPayment(t.http, t.keys.client, job.payment_id);
      const jobWhileDown = await getJob(t.http, t.keys.client, job.job_id);

      // The daemon comes back. Whether an earlier create reached it unseen cannot be known
      // without repeating the create (same key), so the re-drive does, and refunds any hold
      // at once: the payment stays failed and the client ends where it started.
      await daemon.resetFaults();
      for (let i = 0; i < 6; i++) {
        await sleep(400);
        await redriveDue();
      }
      const after = await getPayment(t.http, t.keys.client, job.payment_id);
      const events = await paymentEvents(t.http, t.keys.client, job.payment_id);
      const transfers = after.escrow_id
        ? (await daemon.escrowTransfers(after.escrow_id)).map((x: { kind: string }) => x.kind).sort()
        : [];

      expect({
        jobWhileDown: { state: jobWhileDown.state, error: jobWhileDown.error },
        paymentWhileDown: whileDown.status,
        failureReason: whileDown.failure_reason,
        paymentAfterDaemonBack: after.status,
        lateHoldRefunded: after.refund_transaction_hash !== null,
        transfers,
        arrivals: events.map((e: { to: string; reason: string }) => `${e.to}:${e.reason}`),
        clientBalanceUnchanged: new Money(await daemon.balance(t.clientWallet)).eq(clientBefore),
        creationFailureCounted: (await metricValue(t.http, 'escrow_creation_failures_total')) >= 1,
      }).toEqual({
        jobWhileDown: { state: 'failed', error: expect.stringMatching(/escrow/i) },
        paymentWhileDown: 'failed',
        failureReason: 'escrow_not_confirmed_before_deadline',
        paymentAfterDaemonBack: 'failed',
        lateHoldRefunded: true,
        transfers: ['create', 'refund'],
        arrivals: [
          'pending:payment_created',
          'failed:escrow_not_confirmed_before_deadline',
          'failed:late_escrow_refunded',
        ],
        clientBalanceUnchanged: true,
        creationFailureCounted: true,
      });
      await daemon.expectLedgerConserved();
    });
  });

  it('crash: SIGKILL while a decided release is in flight (the daemon applied it, its answer not yet back); after a restart the re-drive repeats it with the same key and it completes exactly once', async () => {
    const identity = await startApp({});
    const amount = '0.0041';
    const payout = await daemon.newAddress();
    const clientBefore = new Money(await daemon.balance(identity.clientWallet));
    // Every call goes through a recording pass-through, so the test knows what reached the daemon.
    const proxy = await startDaemonProxy(daemon.endpoint.url);
    const releases = () => proxy.calls.filter((call) => call.path === '/api/v1/escrow/release');
    try {
      // No re-drive worker in the first process (only its request settles) and no timeout before the kill.
      const first: CoordinatorProcess = await spawnCoordinator(identity, {
        WALLET_DAEMON_URL: proxy.url,
        SWEEPS_ENABLED: 'false',
        SETTLEMENT_LEASE_MS: '1000',
        WALLET_DAEMON_TIMEOUT_MS: '120000',
      });
      const http1 = request(first.url);
      await registerMiner(http1, identity.keys.miner, payout);
      const created = await createPaidJob(http1, identity.keys.client, { amount });
      expect(created.payment_status).toBe('escrowed');
      await expect(pollJob(http1, identity.keys.miner)).resolves.toMatchObject({ job_id: created.job_id });

      // The release is decided and committed, the daemon carries it out, and its answer is kept from the coordinator.
      proxy.holdAnswers((call) => call.path === '/api/v1/escrow/release');
      const inFlight = http1
        .post(`/v1/miners/jobs/${created.job_id}/result`)
        .set('X-Api-Key', identity.keys.miner)
        .send({ result: { ok: true } })
        .then(
          (response) => ({ status: response.status }),
          (error: Error) => ({ error: error.message }),
        );
      const applied = await waitFor(
        'the daemon to answer the release',
        async () => releases().find((call) => call.status !== undefined),
        30_000,
        20,
      );
      expect(applied).toMatchObject({ status: 200, delivered: false });
      const appliedHash = (JSON.parse(applied.answer!) as { transaction_hash: string }).transaction_hash;
      const escrowId = (
        await query<{ escrow_id: string }>(
          identity.databaseUrl,
          `SELECT escrow_id FROM job_payments WHERE payment_id = $1`,
          [created.payment_id],
        )
      )[0].escrow_id;
      // At the daemon the money has moved; the coordinator has only decided.
      const atDaemon = await daemon.escrowTransfers(escrowId);
      expect(kinds(atDaemon)).toEqual(['create', 'release']);
      expect(atDaemon.find((x) => x.kind === 'release')).toMatchObject({ to: payout, transaction_hash: appliedHash });
      expect(await statusOf(identity.databaseUrl, created.payment_id)).toBe('releasing');

      await first.kill();
      // The process died without the daemon's answer: decided, not confirmed.
      await expect(inFlight).resolves.toEqual({ error: expect.any(String) });
      expect(await statusOf(identity.databaseUrl, created.payment_id)).toBe('releasing');

      proxy.holdAnswers(undefined);
      const second = await spawnCoordinator(identity, {
        WALLET_DAEMON_URL: proxy.url,
        REDRIVE_INTERVAL_MS: '200',
        SETTLEMENT_LEASE_MS: '1000',
      });
      await waitFor(
        'the restarted coordinator to complete the release',
        async () => (await statusOf(identity.databaseUrl, created.payment_id)) === 'released',
        30_000,
        100,
      );

      // The re-drive sent the release again under the same key; the daemon replayed its answer instead of paying twice.
      const [original, ...repeats] = releases();
      expect(repeats.length).toBeGreaterThanOrEqual(1);
      for (const repeat of repeats) {
        expect(repeat).toMatchObject({ idempotencyKey: original.idempotencyKey, status: 200, delivered: true });
        expect(JSON.parse(repeat.answer!)).toMatchObject({ transaction_hash: appliedHash });
      }
      const http2 = request(second.url);
      const payment = await getPayment(http2, identity.keys.client, created.payment_id);
      expect(payment).toMatchObject({
        status: 'released',
        payee_address: payout,
        transaction_hash: appliedHash,
        refund_transaction_hash: null,
      });
      expect(kinds(await daemon.escrowTransfers(escrowId))).toEqual(['create', 'release']);
      const events = await paymentEvents(http2, identity.keys.client, created.payment_id);
      expect(events.filter((e: { to: string }) => e.to === 'released')).toHaveLength(1);
      await expect(getJob(http2, identity.keys.client, created.job_id)).resolves.toMatchObject({
        state: 'completed',
        payment_status: 'released',
      });
      // It was the restarted instance's re-drive that finished the job.
      await expect(
        metricValue(http2, 'settlement_retries_total', { status: 'releasing' }),
      ).resolves.toBeGreaterThanOrEqual(1);

      expect(new Money(await daemon.balance(payout)).eq(amount)).toBe(true);
      expect(new Money(await daemon.balance(identity.clientWallet)).eq(clientBefore.minus(amount))).toBe(true);
      await second.stop();
    } finally {
      await proxy.close();
    }
  });

  it('graceful stop (SIGTERM) while the escrow of a paid job is at the daemon and its caller has hung up: the hold is recorded before the process exits', async () => {
    const identity = await startApp({});
    const proxy = await startDaemonProxy(daemon.endpoint.url);
    const creates = () => proxy.calls.filter((call) => call.path === '/api/v1/escrow/create');
    try {
      // No re-drive in this process: only the request itself can record the hold.
      const coordinator: CoordinatorProcess = await spawnCoordinator(identity, {
        WALLET_DAEMON_URL: proxy.url,
        SWEEPS_ENABLED: 'false',
        LOG_LEVEL: 'info',
      });
      proxy.holdAnswers((call) => call.path === '/api/v1/escrow/create');
      const caller = new AbortController();
      const sent = fetch(`${coordinator.url}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': identity.keys.client },
        body: JSON.stringify({ payload: { job_type: 'ai_inference', parameters: {} }, payment_amount: '0.0031' }),
        signal: caller.signal,
      }).catch((error: unknown) => error);
      const applied = await waitFor(
        'the daemon to hold the escrow',
        async () => creates().find((call) => call.status !== undefined),
        30_000,
        20,
      );
      expect(applied).toMatchObject({ status: 201, delivered: false });
      const paymentId = (JSON.parse(applied.answer!) as { payment_id: string }).payment_id;
      expect(await statusOf(identity.databaseUrl, paymentId)).toBe('pending');

      // The caller hangs up, then the process is asked to stop while the daemon's answer is still held back.
      caller.abort();
      await expect(sent).resolves.toMatchObject({ name: 'AbortError' });
      const stopped = coordinator.stop();
      await waitFor(
        'the coordinator to wait for its request, or to exit',
        async () =>
          coordinator.outputTail().includes('request(s) in flight before closing the database pool') ||
          coordinator.child.exitCode !== null,
        10_000,
        20,
      );
      proxy.deliverHeld();
      await stopped;

      expect(coordinator.child.exitCode).toBe(0);
      expect(await statusOf(identity.databaseUrl, paymentId)).toBe('escrowed');
      const [job] = await query<{ payment_status: string; state: string }>(
        identity.databaseUrl,
        `SELECT j.state, j.payment_status FROM job j JOIN job_payments p ON p.job_id = j.job_id WHERE p.payment_id = $1`,
        [paymentId],
      );
      expect(job).toEqual({ state: 'queued', payment_status: 'escrowed' });
      expect(creates()).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it('three coordinator processes sweep 500 overdue escrows at once: 500 refunds, none twice, no deadlock', async () => {
    const total = 500;
    const amount = '0.001';
    // The creating app never sweeps; the three processes do.
    const creator = await startApp({ WALLET_DAEMON_RETRIES: '3', SETTLEMENT_LEASE_MS: '30000' });
    const env = {
      JOB_SWEEP_INTERVAL_MS: '200',
      ESCROW_SWEEP_INTERVAL_MS: '200',
      REDRIVE_INTERVAL_MS: '200',
      SETTLEMENT_LEASE_MS: '1000',
      DB_POOL_SIZE: '5',
    };
    const instances = await Promise.all([1, 2, 3].map(() => spawnCoordinator(creator, env)));
    const clientBefore = new Money(await daemon.balance(creator.clientWallet));

    // Frozen while the escrows are created, so that all 500 fall due before any instance sweeps.
    for (const instance of instances) instance.pause();
    const jobs = await mapConcurrent(Array.from({ length: total }), 25, () =>
      createPaidJob(creator.http, creator.keys.client, { amount, escrow_timeout_seconds: 2 }),
    );
    expect(jobs.filter((job) => job.payment_status === 'escrowed')).toHaveLength(total);
    expect(
      new Money(await daemon.balance(creator.clientWallet)).eq(clientBefore.minus(new Money(amount).times(total))),
    ).toBe(true);
    await sleepUntil(Math.max(...jobs.map((job) => Date.parse(job.expires_at))) + 100);

    const started = Date.now();
    for (const instance of instances) instance.resume();
    let progress = '';
    await waitFor(
      `all ${total} payments refunded`,
      async () => {
        const counts = await query<{ status: string; n: string }>(
          creator.databaseUrl,
          `SELECT status, count(*) AS n FROM job_payments GROUP BY 1 ORDER BY 1`,
        );
        progress = counts.map((c) => `${c.status} ${c.n}`).join(', ');
        return counts.length === 1 && counts[0].status === 'refunded' && Number(counts[0].n) === total;
      },
      90_000,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; payments by status: ${progress}`);
    });
    const seconds = (Date.now() - started) / 1000;

    const states = await query<{ state: string; status: string; settle_reason: string; n: string }>(
      creator.databaseUrl,
      `SELECT j.state, p.status, p.settle_reason, count(*) AS n FROM job j JOIN job_payments p USING (job_id)
        GROUP BY 1, 2, 3`,
    );
    expect(states).toEqual([
      { state: 'expired', status: 'refunded', settle_reason: 'escrow_expired', n: String(total) },
    ]);

    // None twice, by the coordinator's audit trail…
    const events = await query<{ payment_id: string; refunding: string; refunded: string }>(
      creator.databaseUrl,
      `SELECT payment_id, count(*) FILTER (WHERE to_status = 'refunding') AS refunding, count(*) FILTER (WHERE to_status = 'refunded') AS refunded
         FROM payment_events GROUP BY payment_id`,
    );
    expect(events).toHaveLength(total);
    expect(events.filter((e) => e.refunding !== '1' || e.refunded !== '1')).toEqual([]);

    // …and by the daemon's ledger: one hold and one refund per escrow.
    const escrows = await query<{ escrow_id: string }>(creator.databaseUrl, `SELECT escrow_id FROM job_payments`);
    const wrong = (
      await mapConcurrent(escrows, 25, async ({ escrow_id }) => ({
        escrow_id,
        transfers: kinds(await daemon.escrowTransfers(escrow_id)),
      }))
    ).filter((e) => e.transfers.join() !== 'create,refund');
    expect(wrong).toEqual([]);
    expect(new Money(await daemon.balance(creator.clientWallet)).eq(clientBefore)).toBe(true);

    // Each expiry was decided by exactly one instance.
    const expiredBy = await Promise.all(
      instances.map(async (instance) =>
        sumSamples((await request(instance.url).get('/metrics')).text, 'escrows_expired_total'),
      ),
    );
    expect(expiredBy.reduce((a, b) => a + b, 0)).toBe(total);
    process.stdout.write(
      `[recovery] ${total} overdue escrows refunded in ${seconds.toFixed(1)} s; expiries decided per instance: ${expiredBy.join(', ')}\n`,
    );
    // The instances' sweeps and re-drives locked the same rows at once: PostgreSQL never had to abort one.
    const abortsBy = await Promise.all(
      instances.map(async (instance) => {
        const metrics = (await request(instance.url).get('/metrics')).text;
        // The counter exists in this build: a stale dist/ would read as 0 and prove nothing.
        expect(metrics).toContain('# TYPE db_transaction_aborts_total counter');
        return sumSamples(metrics, 'db_transaction_aborts_total');
      }),
    );
    expect(abortsBy).toEqual([0, 0, 0]);

    await Promise.all(instances.map((instance) => instance.stop()));
  }, 180_000);
});
