import { setTimeout as sleep } from 'node:timers/promises';
import { JobsService } from '../src/jobs/jobs.service';
import { PaymentsService } from '../src/payments/payments.service';
import type { TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { metricValue } from './support/flow';
import { Api, diff, expectStatus, PAYLOAD, startApp } from './support/payments';

const expectCreated = (response: Parameters<typeof expectStatus>[0]) => expectStatus(response, 201, 'POST /v1/jobs');

jest.setTimeout(60_000);

/**
 * What the coordinator does when the wallet daemon says no, is unreachable, or loses its
 * answer: fail closed, never flip a decided outcome, and settle exactly once on recovery.
 * A daemon of this file alone takes the injected faults. The lease after which the
 * re-drive worker takes over is short (100 ms), and daemon calls are retried once.
 */
describe('payment failures (e2e)', () => {
  let priv: PrivateDaemon;
  let t: TestApp;
  let api: Api;

  beforeAll(async () => {
    priv = await startPrivateDaemon();
    t = await startApp(
      { SETTLEMENT_LEASE_MS: '100', WALLET_DAEMON_RETRIES: '1', WALLET_DAEMON_TIMEOUT_MS: '2000' },
      { daemon: priv.daemon },
    );
    api = new Api(t);
  });
  afterAll(async () => {
    await t?.close();
    await priv?.stop();
  });
  afterEach(async () => {
    await priv.daemon.resetFaults();
    await api.cancelLiveJobs();
    await priv.daemon.expectLedgerConserved('BTC');
  });

  it('insufficient funds: the job fails with a clear error, the payment fails with a reason, nothing is dispatched or moved', async () => {
    const emptyPayer = await priv.daemon.newAddress('BTC');
    const client2Before = await api.balance(t.client2Wallet);

    const response = await api.postJob('client2', {
      payload: PAYLOAD,
      payment_amount: '0.001',
      payer_address: emptyPayer,
    });
    expect(response.status).toBe(201);
    const job = response.body;
    expect(job).toMatchObject({ state: 'failed', payment_status: 'failed', payment_amount: '0.00100000' });
    expect(job.error).toMatch(/insufficient/i);

    const payment = await api.payment(job.payment_id, 'client2');
    expect(payment).toMatchObject({
      status: 'failed',
      escrow_id: null,
      payer_address: emptyPayer,
      failure_reason: expect.stringMatching(/insufficient/i),
    });
    expect(await api.job(job.job_id, 'client2')).toMatchObject({ state: 'failed', payment_status: 'failed' });

    await api.registerFreshMiner('miner');
    expect((await api.pollRaw('miner')).status).toBe(204);
    expect(await api.balance(emptyPayer)).toBe('0.00000000');
    expect(await api.balance(t.client2Wallet)).toBe(client2Before);
    const events = await api.events(job.payment_id, 'client2');
    expect(events.map((e) => [e.from, e.to])).toEqual([
      [null, 'pending'],
      ['pending', 'failed'],
    ]);
  });

  it('daemon failing at create: the payment stays pending and the job undispatched; after recovery a re-drive escrows it', async () => {
    const before = await api.balance(t.clientWallet);
    await api.registerFreshMiner('miner');
    await priv.daemon.setFaults({ fail_rate: 1 });

    const response = await api.postJob('client', { payload: PAYLOAD, payment_amount: '0.00123' });
    expect(response.status).toBe(201);
    const job = response.body;
    expect(job).toMatchObject({ state: 'queued', payment_status: 'pending' });
    expect(await api.payment(job.payment_id)).toMatchObject({ status: 'pending', escrow_id: null });
    expect((await api.pollRaw('miner')).status).toBe(204);

    // Re-drives while the daemon still fails change nothing.
    await sleep(600);
    await t.app.get(PaymentsService).redriveDue();
    expect(await api.payment(job.payment_id)).toMatchObject({ status: 'pending' });
    expect((await api.pollRaw('miner')).status).toBe(204);

    await priv.daemon.resetFaults();
    expect(await api.balance(t.clientWallet)).toBe(before);
    await sleep(150);
    const escrowed = await api.redriveUntil(job.payment_id, 'escrowed');
    expect(escrowed).toMatchObject({ escrow_id: expect.any(String), escrowed_at: expect.any(String) });
    expect(await api.job(job.job_id)).toMatchObject({ state: 'queued', payment_status: 'escrowed' });
    expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00123000');
    // One hold only, however many times the create was attempted.
    expect((await priv.daemon.escrowTransfers(escrowed.escrow_id)).map((x) => x.kind)).toEqual(['create']);

    const polled = await api.pollFor(job.job_id);
    expect(polled).toMatchObject({ state: 'running', payment_status: 'escrowed' });
  });

  it('daemon unreachable at create (closed port): pending until a coordinator that reaches the daemon re-drives it', async () => {
    // Same database and wallets as `t`, but its daemon URL points at a closed port.
    const cut = await startApp(
      { WALLET_DAEMON_URL: 'http://127.0.0.1:1', WALLET_DAEMON_RETRIES: '0', SETTLEMENT_LEASE_MS: '100' },
      { sameAs: t },
    );
    try {
      const cutApi = new Api(cut);
      const before = await api.balance(t.clientWallet);
      const response = await cutApi.postJob('client', { payload: PAYLOAD, payment_amount: '0.00077' });
      expect(response.status).toBe(201);
      const job = response.body;
      expect(job).toMatchObject({ state: 'queued', payment_status: 'pending' });
      await api.registerFreshMiner('miner');
      expect((await cutApi.pollRaw('miner')).status).toBe(204);
      expect(await api.balance(t.clientWallet)).toBe(before);

      // The cut-off instance cannot help; the healthy one (`t`) completes the escrow.
      await sleep(600);
      await cut.app.get(PaymentsService).redriveDue();
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'pending' });
      const escrowed = await api.redriveUntil(job.payment_id, 'escrowed');
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00077000');
      expect((await priv.daemon.escrowTransfers(escrowed.escrow_id)).map((x) => x.kind)).toEqual(['create']);
      await api.pollFor(job.job_id);
    } finally {
      await cut.close();
    }
  });

  it('daemon failing at create, client cancels meanwhile: once the daemon is back the late hold is refunded at once', async () => {
    const before = await api.balance(t.clientWallet);
    await priv.daemon.setFaults({ fail_rate: 1 });
    const job = expectCreated(await api.postJob('client', { payload: PAYLOAD, payment_amount: '0.00055' }));
    expect(job).toMatchObject({ state: 'queued', payment_status: 'pending' });

    const canceled = await api.cancel('client', job.job_id);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ state: 'canceled' });

    await priv.daemon.resetFaults();
    await sleep(150);
    const refunded = await api.redriveUntil(job.payment_id, 'refunded');
    expect(refunded).toMatchObject({
      escrow_id: expect.any(String),
      refund_transaction_hash: expect.any(String),
      transaction_hash: null,
    });
    expect((await priv.daemon.escrowTransfers(refunded.escrow_id)).map((x) => x.kind)).toEqual(['create', 'refund']);
    expect(await api.balance(t.clientWallet)).toBe(before);
    expect(await api.job(job.job_id)).toMatchObject({ state: 'canceled', payment_status: 'refunded' });
  });

  it('daemon down past the deadline: the job and its payment end failed, and nothing stays charged once the daemon is back', async () => {
    const before = await api.balance(t.clientWallet);
    await priv.daemon.setFaults({ fail_rate: 1 });
    const job = expectCreated(
      await api.postJob('client', { payload: PAYLOAD, ttl_seconds: 1, payment_amount: '0.00066' }),
    );
    expect(job).toMatchObject({ state: 'queued', payment_status: 'pending' });

    await sleep(1200);
    await t.app.get(JobsService).expireDue();
    const atDeadline = { job: await api.job(job.job_id), payment: await api.payment(job.payment_id) };

    await priv.daemon.resetFaults();
    // Let the re-drive worker run as it would for a while after the daemon is back.
    for (let i = 0; i < 8; i++) {
      await sleep(300);
      await t.app.get(PaymentsService).redriveDue();
    }
    const later = { job: await api.job(job.job_id), payment: await api.payment(job.payment_id) };

    // One comparison, so every departure from the contract shows at once.
    expect({
      jobAtDeadline: atDeadline.job.state,
      jobErrorExplains: /escrow/i.test(atDeadline.job.error ?? ''),
      paymentAtDeadline: atDeadline.payment.status,
      jobLater: later.job.state,
      paymentLater: later.payment.status,
      mirroredLater: later.job.payment_status === later.payment.status,
      clientBalanceBack: (await api.balance(t.clientWallet)) === before,
    }).toEqual({
      jobAtDeadline: 'failed',
      jobErrorExplains: true,
      paymentAtDeadline: 'failed',
      jobLater: 'failed',
      paymentLater: 'failed',
      mirroredLater: true,
      clientBalanceBack: true,
    });
  });

  it('daemon unreachable at release (closed port): the payment stays releasing, never flips, and settles once after recovery', async () => {
    const job = await api.paidJob('client', { payment_amount: '0.0042' });
    const payout = await api.registerFreshMiner('miner');
    await api.pollFor(job.job_id);
    // Same database and wallets as `t`, but its daemon URL points at a closed port: nothing answers at all.
    const cut = await startApp(
      { WALLET_DAEMON_URL: 'http://127.0.0.1:1', WALLET_DAEMON_RETRIES: '0', SETTLEMENT_LEASE_MS: '100' },
      { sameAs: t },
    );
    try {
      const cutApi = new Api(cut);
      const result = await cutApi.result('miner', job.job_id, { text: 'done' });
      expect(result.status).toBe(200);
      expect(result.body).toMatchObject({ state: 'completed', payment_status: 'releasing' });
      expect(await cutApi.payment(job.payment_id)).toMatchObject({ status: 'releasing', transaction_hash: null });
      // The release call never got an answer: the connection was refused.
      await expect(
        metricValue(cut.http, 'wallet_daemon_errors_total', { call: 'escrow_release', kind: 'ECONNREFUSED' }),
      ).resolves.toBeGreaterThanOrEqual(1);

      // While the daemon cannot be reached: re-drives, the deadline sweep and refund attempts change nothing.
      for (let i = 0; i < 3; i++) {
        await sleep(400);
        await cut.app.get(PaymentsService).redriveDue();
        await cut.app.get(JobsService).expireDue();
      }
      const refund = await cutApi.refund('admin', job.payment_id, { reason: 'try to flip it' });
      expect(refund.status).toBe(409);
      expect(refund.body).toMatchObject({ code: 'PAYMENT_ALREADY_SETTLED', details: { status: 'releasing' } });
      const cancel = await cutApi.cancel('client', job.job_id);
      expect(cancel.status).toBe(409);
      expect(await cutApi.payment(job.payment_id)).toMatchObject({ status: 'releasing' });
      expect(await cutApi.job(job.job_id)).toMatchObject({ state: 'completed', payment_status: 'releasing' });
      const receipt = await cutApi.receipt(job.payment_id);
      expect(receipt).toMatchObject({ status: 'releasing', verified: false });
      expect(await api.balance(payout)).toBe('0.00000000');
    } finally {
      await cut.close();
    }

    // A coordinator that reaches the daemon (`t`) finishes it.
    const released = await api.redriveUntil(job.payment_id, 'released');
    // More re-drives after the settlement find nothing to do.
    for (let i = 0; i < 3; i++) {
      await sleep(150);
      await t.app.get(PaymentsService).redriveDue();
    }
    expect(await api.payment(job.payment_id)).toMatchObject({
      status: 'released',
      transaction_hash: released.transaction_hash,
    });
    const transfers = await priv.daemon.escrowTransfers(released.escrow_id);
    expect(transfers.map((x) => x.kind)).toEqual(['create', 'release']);
    expect(transfers[1]).toMatchObject({
      to: payout,
      amount: '0.00420000',
      transaction_hash: released.transaction_hash,
    });
    expect(await api.balance(payout)).toBe('0.00420000');
    expect(await api.job(job.job_id)).toMatchObject({ state: 'completed', payment_status: 'released' });
    expect(await api.receipt(job.payment_id)).toMatchObject({ status: 'released', verified: true });
    const events = await api.events(job.payment_id);
    expect(events.map((e) => e.to)).toEqual(['pending', 'escrowed', 'releasing', 'released']);
  });

  it('daemon unreachable during POST /v1/payments/batch: each item answers its payment as postponed (refunding, the error kept), then settles once', async () => {
    const jobs = [await api.paidJob('client'), await api.paidJob('client')];
    const cut = await startApp(
      { WALLET_DAEMON_URL: 'http://127.0.0.1:1', WALLET_DAEMON_RETRIES: '0', SETTLEMENT_LEASE_MS: '100' },
      { sameAs: t },
    );
    try {
      const response = await cut.http
        .post('/v1/payments/batch')
        .set('X-Api-Key', cut.keys.client)
        .send({ items: jobs.map((job) => ({ payment_id: job.payment_id, action: 'refund' })) });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ succeeded: 2, failed: 0 });
      // Each answer is the row the postponement wrote, the same as a read of the payment now.
      for (const [i, job] of jobs.entries()) {
        const item = response.body.items[i];
        expect(item).toMatchObject({ index: i, payment_id: job.payment_id, status_code: 200 });
        expect(item.payment).toMatchObject({ status: 'refunding', refund_transaction_hash: null });
        expect(item.payment).toEqual(await new Api(cut).payment(job.payment_id, 'client'));
      }
      const [row] = await api.query<{ last_error: string }>(
        `SELECT last_error FROM job_payments WHERE payment_id = $1`,
        [jobs[0].payment_id],
      );
      expect(row.last_error).toMatch(/^escrow_refund: /);
    } finally {
      await cut.close();
    }

    for (const job of jobs) {
      const refunded = await api.redriveUntil(job.payment_id, 'refunded');
      const transfers = await priv.daemon.escrowTransfers(refunded.escrow_id);
      expect(transfers.map((x) => x.kind)).toEqual(['create', 'refund']);
      expect((await api.events(job.payment_id)).map((e) => e.to)).toEqual([
        'pending',
        'escrowed',
        'refunding',
        'refunded',
      ]);
    }
  });

  it('daemon drops the answer after applying the release: retries reuse the key, one transfer, payment released', async () => {
    const job = await api.paidJob('client', { payment_amount: '0.0031' });
    const payout = await api.registerFreshMiner('miner');
    await api.pollFor(job.job_id);
    await priv.daemon.setFaults({ drop_rate: 1 });

    const result = await api.result('miner', job.job_id);
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ state: 'completed' });
    // Every answer was lost, so the coordinator does not know yet; the daemon already moved the money once.
    expect(await api.payment(job.payment_id)).toMatchObject({ status: 'releasing' });
    await priv.daemon.resetFaults();
    const payment = await api.payment(job.payment_id);
    const applied = await priv.daemon.escrowTransfers(payment.escrow_id);
    expect(applied.map((x) => x.kind)).toEqual(['create', 'release']);
    expect(await api.balance(payout)).toBe('0.00310000');

    const released = await api.redriveUntil(job.payment_id, 'released');
    expect(released.transaction_hash).toBe(applied[1].transaction_hash);
    expect((await priv.daemon.escrowTransfers(payment.escrow_id)).map((x) => x.kind)).toEqual(['create', 'release']);
    expect(await api.balance(payout)).toBe('0.00310000');
    expect(await api.job(job.job_id)).toMatchObject({ state: 'completed', payment_status: 'released' });
  });

  it('daemon drops the answer after applying the create: the re-drive finds the same hold, charged once', async () => {
    const before = await api.balance(t.clientWallet);
    await priv.daemon.setFaults({ drop_rate: 1 });
    const response = await api.postJob('client', { payload: PAYLOAD, payment_amount: '0.0017' });
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ state: 'queued', payment_status: 'pending' });
    await priv.daemon.resetFaults();
    // The daemon held the money although the coordinator never heard back.
    expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00170000');

    const escrowed = await api.redriveUntil(response.body.payment_id, 'escrowed');
    expect((await priv.daemon.escrowTransfers(escrowed.escrow_id)).map((x) => x.kind)).toEqual(['create']);
    expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00170000');
  });
});
