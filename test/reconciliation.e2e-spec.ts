import { createPublicKey, randomUUID, verify } from 'node:crypto';
import canonicalize from 'canonicalize';
import { ReconciliationService } from '../src/reconciliation/reconciliation.service';
import type { TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { metricValue, query, waitFor } from './support/flow';
import { Api, Body, expectStatus, startApp } from './support/payments';

jest.setTimeout(60_000);

/**
 * Reconciliation (README "Reconciliation"): the coordinator's books against the wallet
 * daemon's. A daemon of this file alone, so its ledger totals move only with this file's
 * payments and the faults hit nobody else. Passes are run by hand (sweeps are off in
 * tests), as the other specs run their sweeps.
 */
describe('reconciliation (e2e)', () => {
  let priv: PrivateDaemon;
  let t: TestApp;
  let api: Api;

  beforeAll(async () => {
    priv = await startPrivateDaemon();
    // No client retries: an answer the daemon drops leaves the payment `releasing` at once.
    t = await startApp({ WALLET_DAEMON_RETRIES: '0' }, { daemon: priv.daemon });
    api = new Api(t);
  });
  afterAll(async () => {
    await t?.close();
    await priv?.stop();
  });
  afterEach(async () => {
    await priv.daemon.resetFaults();
    await priv.daemon.expectLedgerConserved('BTC');
  });

  const pass = (app: TestApp = t) => app.app.get(ReconciliationService).reconcile();
  const report = async (): Promise<Body> =>
    expectStatus(
      await t.http.get('/v1/admin/reconciliation').set('X-Api-Key', t.keys.admin),
      200,
      'GET /v1/admin/reconciliation',
    );
  const daemonEscrow = async (escrowId: string): Promise<Body> =>
    (await query(priv.databaseUrl, `SELECT * FROM wallet_daemon.escrows WHERE escrow_id = $1`, [escrowId]))[0];
  const paymentRow = async (paymentId: string): Promise<Body> =>
    (await api.query(`SELECT * FROM job_payments WHERE payment_id = $1`, [paymentId]))[0];

  /** Every balance the daemon keeps, and its totals: what a pass must leave exactly as it found them. */
  const money = async () => ({
    totals: await priv.daemon.ledgerTotals('BTC'),
    accounts: await query(
      priv.databaseUrl,
      `SELECT account_id, balance FROM wallet_daemon.accounts ORDER BY account_id`,
    ),
    transfers: (await query(priv.databaseUrl, `SELECT count(*)::int AS n FROM wallet_daemon.transfers`))[0].n,
  });

  /** A paid job dispatched to a fresh miner, whose release the daemon applies and whose answer it drops. */
  async function releasedOnlyAtTheDaemon(amount: string): Promise<{ payment: Body; payout: string }> {
    const job = await api.paidJob('client', { payment_amount: amount });
    const payout = await api.registerFreshMiner('miner');
    await api.pollFor(job.job_id);
    await priv.daemon.setFaults({ drop_rate: 1 });
    const result = await api.result('miner', job.job_id);
    await priv.daemon.resetFaults();
    expect(result.status).toBe(200);
    const payment = await api.payment(job.payment_id);
    // The crash window: the daemon paid the miner, the coordinator still waits for the answer.
    expect(payment).toMatchObject({ status: 'releasing', transaction_hash: null });
    expect(await daemonEscrow(payment.escrow_id)).toMatchObject({ state: 'released', payee: payout });
    return { payment, payout };
  }

  it('the daemon lookup: many escrows in one call, as GET /api/v1/escrow/{id} shows them plus the legs, unknown ids left out', async () => {
    const daemonCall = (method: 'GET' | 'POST', path: string, body?: unknown) =>
      fetch(`${priv.daemon.endpoint.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${priv.daemon.endpoint.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const held = await api.payment((await api.paidJob('client', { payment_amount: '0.0011' })).payment_id);
    const refunded = await api.payment((await api.paidJob('client', { payment_amount: '0.0012' })).payment_id);
    expect((await api.cancel('client', refunded.job_id)).status).toBe(200);
    const unknown = randomUUID();

    const answer = await daemonCall('POST', '/api/v1/escrow/lookup', {
      escrow_ids: [held.escrow_id, unknown, refunded.escrow_id.toUpperCase(), 'not-an-escrow-id'],
    });
    expect(answer.status).toBe(200);
    const { items } = (await answer.json()) as { items: Body[] };
    expect(items.map((i) => i.escrow_id).sort()).toEqual([held.escrow_id, refunded.escrow_id].sort());
    for (const item of items) {
      const single = await (await daemonCall('GET', `/api/v1/escrow/${item.escrow_id}`)).json();
      expect(item).toMatchObject(single);
    }
    const byId = new Map(items.map((i) => [i.escrow_id, i]));
    expect(byId.get(held.escrow_id)).toMatchObject({
      payment_id: held.payment_id,
      state: 'held',
      amount: '0.00110000',
      currency: 'BTC',
      transaction_hash: null,
      released_amount: null,
      refunded_amount: null,
    });
    expect(byId.get(refunded.escrow_id)).toMatchObject({
      payment_id: refunded.payment_id,
      state: 'refunded',
      amount: '0.00120000',
      transaction_hash: (await api.payment(refunded.payment_id)).refund_transaction_hash,
      released_amount: '0.00000000',
      refunded_amount: '0.00120000',
    });

    const tooMany = Array.from({ length: 501 }, () => randomUUID());
    for (const body of [{}, { escrow_ids: [] }, { escrow_ids: tooMany }, { escrow_ids: [42] }, { escrow_ids: 'x' }]) {
      const refused = await daemonCall('POST', '/api/v1/escrow/lookup', body);
      expect(refused.status).toBe(400);
      await expect(refused.json()).resolves.toMatchObject({ code: 'INVALID_REQUEST' });
    }
    const unknownOnly = await daemonCall('POST', '/api/v1/escrow/lookup', { escrow_ids: tooMany.slice(0, 500) });
    await expect(unknownOnly.json()).resolves.toEqual({ items: [] });
    // The held escrow's job goes, so later tests poll a clean queue.
    expect((await api.cancel('client', held.job_id)).status).toBe(200);
  });

  it('before any pass: an empty report, and the metric at 0 for every kind', async () => {
    await expect(report()).resolves.toEqual({ last_run_at: null, checked: 0, matched: 0, repaired: 0, mismatches: [] });
    const metrics = await t.http.get('/metrics');
    expect(metrics.text).toContain('# TYPE reconciliation_mismatches gauge');
    expect(metrics.text).toContain('reconciliation_mismatches{kind="unknown_at_daemon"} 0');
  });

  it('is for admins only', async () => {
    for (const [key, status] of [
      [t.keys.client, 403],
      [t.keys.miner, 403],
      ['not-a-key', 401],
    ] as const) {
      const response = await t.http.get('/v1/admin/reconciliation').set('X-Api-Key', key);
      expect(response.status).toBe(status);
      expect(response.body.code).toBe(status === 403 ? 'FORBIDDEN' : 'UNAUTHORIZED');
    }
  });

  it('repairs a payment left releasing after the daemon settled: released with the daemon hash, a verified receipt, no money moved', async () => {
    const { payment, payout } = await releasedOnlyAtTheDaemon('0.0021');
    const [release] = (await priv.daemon.escrowTransfers(payment.escrow_id)).filter((x) => x.kind === 'release');
    const before = await money();

    const result = await pass();

    expect(result).toMatchObject({ repaired: 1, mismatches: [] });
    expect(await money()).toEqual(before);
    expect(await api.balance(payout)).toBe('0.00210000');
    expect((await priv.daemon.escrowTransfers(payment.escrow_id)).map((x) => x.kind)).toEqual(['create', 'release']);

    expect(await api.payment(payment.payment_id)).toMatchObject({
      status: 'released',
      transaction_hash: release.transaction_hash,
      released_amount: '0.00210000',
    });
    const events = await api.events(payment.payment_id);
    expect(events.map((e) => [e.from, e.to, e.actor])).toEqual([
      [null, 'pending', expect.any(String)],
      ['pending', 'escrowed', 'system'],
      ['escrowed', 'releasing', expect.any(String)],
      ['releasing', 'released', 'reconciliation'],
    ]);
    expect(events[3].details).toEqual({ transaction_hash: release.transaction_hash });
    // Nothing left for the re-drive: the lease is cleared with the record.
    expect(await paymentRow(payment.payment_id)).toMatchObject({ next_attempt_at: null });

    const receipt = await api.receipt(payment.payment_id);
    expect(receipt).toMatchObject({ status: 'released', verified: true, transaction_hash: release.transaction_hash });
    const { signature, ...facts } = receipt;
    const key = (await api.receiptKeys()).find((k: Body) => k.key_id === signature.key_id);
    expect(
      verify(
        null,
        Buffer.from(canonicalize(facts) as string),
        createPublicKey(key.public_key_pem),
        Buffer.from(signature.sig, 'base64url'),
      ),
    ).toBe(true);

    const stored = await report();
    expect(stored).toEqual({
      last_run_at: expect.any(String),
      checked: result?.checked,
      matched: result?.matched,
      repaired: 1,
      mismatches: [],
    });
    expect(stored.checked).toBe(stored.matched + 1);

    // The next pass finds the books agreeing: nothing to repair twice.
    await expect(pass()).resolves.toMatchObject({ repaired: 0, mismatches: [] });
    expect((await api.events(payment.payment_id)).length).toBe(4);
  });

  it('two instances running passes at once: one pass runs, the payment is repaired once', async () => {
    const other = await startApp({ WALLET_DAEMON_RETRIES: '0' }, { sameAs: t, daemon: priv.daemon });
    try {
      const { payment } = await releasedOnlyAtTheDaemon('0.0041');
      const before = await money();

      // The daemon answers the lookup slowly, so the pass that got the lease is still running while the others ask.
      await priv.daemon.setFaults({ latency_ms: 300 });
      const results = await Promise.all([pass(t), pass(other), pass(t), pass(other)]);
      await priv.daemon.resetFaults();

      const ran = results.filter((r) => r !== null);
      expect(ran).toHaveLength(1);
      expect(ran[0]).toMatchObject({ repaired: 1 });
      expect(await money()).toEqual(before);
      const events = await api.events(payment.payment_id);
      expect(events.filter((e) => e.to === 'released')).toEqual([
        expect.objectContaining({ from: 'releasing', actor: 'reconciliation' }),
      ]);
      // Both instances answer with the one stored report.
      const fromOther = expectStatus(
        await other.http.get('/v1/admin/reconciliation').set('X-Api-Key', other.keys.admin),
        200,
        'GET /v1/admin/reconciliation',
      );
      expect(fromOther).toEqual(await report());
      expect(fromOther).toMatchObject({ checked: ran[0]?.checked, repaired: 1 });
      await expect(metricValue(other.http, 'reconciliation_mismatches')).resolves.toBe(fromOther.mismatches.length);

      // Run one after the other, both find nothing left to repair.
      await expect(pass(other)).resolves.toMatchObject({ repaired: 0 });
      await expect(pass(t)).resolves.toMatchObject({ repaired: 0 });
      expect((await api.events(payment.payment_id)).filter((e) => e.to === 'released')).toHaveLength(1);
    } finally {
      await other.close();
    }
  });

  it('a pass that cannot reach the daemon writes nothing and gives the lease back; a dead holder’s lease runs out', async () => {
    const before = await report();
    await priv.daemon.setFaults({ fail_rate: 1 });
    await expect(pass()).rejects.toThrow(/wallet daemon/);
    await priv.daemon.resetFaults();
    expect(await report()).toEqual(before);
    expect((await api.query(`SELECT lease_holder, lease_until FROM reconciliation_report`))[0]).toEqual({
      lease_holder: null,
      lease_until: null,
    });

    // An instance that died mid-pass: its lease blocks every pass until it runs out, then anyone takes over.
    await api.query(`UPDATE reconciliation_report SET lease_holder = 'gone', lease_until = now() + interval '1 hour'`);
    await expect(pass()).resolves.toBeNull();
    await api.query(`UPDATE reconciliation_report SET lease_until = now() - interval '1 second'`);
    await expect(pass()).resolves.toMatchObject({ mismatches: [] });
    expect((await report()).last_run_at).not.toBe(before.last_run_at);
  });

  it('walks every payment in pages of at most 500 escrow ids per lookup call', async () => {
    const many = await startApp({ WALLET_DAEMON_RETRIES: '0' }, { daemon: priv.daemon });
    try {
      const manyApi = new Api(many);
      for (let i = 0; i < 6; i++) {
        const items = Array.from({ length: 100 }, () => ({
          payload: { job_type: 'ai_inference' },
          payment_amount: '0.0001',
        }));
        const answer = expectStatus(
          await many.http.post('/v1/jobs/batch').set('X-Api-Key', many.keys.client).send({ items }),
          200,
          'POST /v1/jobs/batch',
        );
        expect(answer.succeeded).toBe(100);
      }
      // One more, settled: the walk over the last 24 hours' settlements finds it.
      const settled = await manyApi.paidJob('client', { payment_amount: '0.0001' });
      expect((await manyApi.cancel('client', settled.job_id)).status).toBe(200);

      const result = await pass(many);

      // The daemon refuses more than 500 ids (400), so a finished pass asked in pages.
      expect(result).toEqual({ checked: 601, matched: 601, repaired: 0, mismatches: [] });
      await expect(
        metricValue(many.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_lookup' }),
      ).resolves.toBe(3);
    } finally {
      // Its 600 jobs stay queued in its own database; their holds stay held at the daemon (the ledger still balances).
      await many.close();
    }
  });

  it('runs by itself every RECONCILE_INTERVAL_MS when the sweeps are on, and stops with the app', async () => {
    const timed = await startApp({ SWEEPS_ENABLED: 'true', RECONCILE_INTERVAL_MS: '1000' }, { daemon: priv.daemon });
    try {
      const ran = await waitFor('a pass by the timer', async () => {
        const response = await timed.http.get('/v1/admin/reconciliation').set('X-Api-Key', timed.keys.admin);
        return response.body.last_run_at !== null && response.body;
      });
      expect(ran).toMatchObject({ checked: 0, mismatches: [] });
    } finally {
      await timed.close();
    }
  });

  // Last: these jobs stay queued with their drifted escrows (cancelling them would settle at the daemon).
  describe('drift the coordinator did not cause is reported, never repaired by moving money', () => {
    const ids: Record<string, Body> = {};

    beforeAll(async () => {
      // Refunded straight at the daemon (an operator's manual fix) while the coordinator says escrowed.
      ids.refundedAtDaemon = await api.payment((await api.paidJob('client', { payment_amount: '0.0031' })).payment_id);
      const refund = await fetch(`${priv.daemon.endpoint.url}/api/v1/refund`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${priv.daemon.endpoint.token}`,
          'content-type': 'application/json',
          'idempotency-key': `manual-fix-${randomUUID()}`,
        },
        body: JSON.stringify({
          escrow_id: ids.refundedAtDaemon.escrow_id,
          refund_address: t.clientWallet,
          reason: 'manual fix at the daemon',
        }),
      });
      expect(refund.status).toBe(200);

      // An escrow id the daemon never issued.
      ids.unknown = await api.payment((await api.paidJob('client', { payment_amount: '0.0032' })).payment_id);
      ids.unknownEscrowId = randomUUID();
      await api.query(`UPDATE job_payments SET escrow_id = $2 WHERE payment_id = $1`, [
        ids.unknown.payment_id,
        ids.unknownEscrowId,
      ]);

      // Marked refunded here (a bad manual fix, a restored backup) while the daemon still holds the money.
      ids.finalHere = await api.payment((await api.paidJob('client', { payment_amount: '0.0035' })).payment_id);
      await api.query(
        `UPDATE job_payments SET status = 'refunded', refund_transaction_hash = repeat('e', 64), refunded_at = now()
          WHERE payment_id = $1`,
        [ids.finalHere.payment_id],
      );

      // An amount changed in the daemon's database.
      ids.amount = await api.payment((await api.paidJob('client', { payment_amount: '0.0033' })).payment_id);
      await query(priv.databaseUrl, `UPDATE wallet_daemon.escrows SET amount = 0.0034 WHERE escrow_id = $1`, [
        ids.amount.escrow_id,
      ]);
    });

    it('lists each with its kind and both sides, counts them in the metric, and moves no money', async () => {
      const before = await money();
      const rowsBefore = await api.query(`SELECT payment_id, status, amount, escrow_id FROM job_payments ORDER BY 1`);

      const result = await pass();

      expect(await money()).toEqual(before);
      expect(await api.query(`SELECT payment_id, status, amount, escrow_id FROM job_payments ORDER BY 1`)).toEqual(
        rowsBefore,
      );
      const stored = await report();
      expect(stored.checked).toBe(result?.checked);
      expect(stored.checked).toBe(stored.matched + stored.repaired + stored.mismatches.length);
      const byPayment = new Map(stored.mismatches.map((m: Body) => [m.payment_id, m]));

      expect(byPayment.get(ids.refundedAtDaemon.payment_id)).toEqual({
        payment_id: ids.refundedAtDaemon.payment_id,
        kind: 'settled_at_daemon_only',
        coordinator: expect.objectContaining({
          status: 'escrowed',
          escrow_id: ids.refundedAtDaemon.escrow_id,
          released_amount: null,
          refunded_amount: null,
        }),
        daemon: expect.objectContaining({
          escrow_id: ids.refundedAtDaemon.escrow_id,
          state: 'refunded',
          amount: '0.00310000',
          released_amount: '0.00000000',
          refunded_amount: '0.00310000',
          transaction_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
        }),
      });
      expect(byPayment.get(ids.unknown.payment_id)).toEqual({
        payment_id: ids.unknown.payment_id,
        kind: 'unknown_at_daemon',
        coordinator: expect.objectContaining({ status: 'escrowed', escrow_id: ids.unknownEscrowId }),
        daemon: null,
      });
      expect(byPayment.get(ids.amount.payment_id)).toEqual({
        payment_id: ids.amount.payment_id,
        kind: 'amount_mismatch',
        coordinator: expect.objectContaining({ status: 'escrowed', amount: '0.00330000' }),
        daemon: expect.objectContaining({ state: 'held', amount: '0.00340000' }),
      });
      expect(byPayment.get(ids.finalHere.payment_id)).toEqual({
        payment_id: ids.finalHere.payment_id,
        kind: 'held_at_daemon_final_here',
        // Both sides' legs, to read against each other: all back to the client here, nothing yet there.
        coordinator: expect.objectContaining({
          status: 'refunded',
          refund_transaction_hash: 'e'.repeat(64),
          released_amount: '0.00000000',
          refunded_amount: '0.00350000',
        }),
        daemon: expect.objectContaining({ state: 'held', transaction_hash: null }),
      });
      expect(stored.mismatches).toHaveLength(4);

      for (const kind of [
        'settled_at_daemon_only',
        'unknown_at_daemon',
        'amount_mismatch',
        'held_at_daemon_final_here',
      ]) {
        await expect(metricValue(t.http, 'reconciliation_mismatches', { kind })).resolves.toBe(1);
      }
      await expect(metricValue(t.http, 'reconciliation_mismatches', { kind: 'outcome_mismatch' })).resolves.toBe(0);

      // The daemon's escrows are as they were: the manual refund stands, the others are still held.
      expect(await daemonEscrow(ids.refundedAtDaemon.escrow_id)).toMatchObject({ state: 'refunded' });
      expect(await daemonEscrow(ids.unknown.escrow_id)).toMatchObject({ state: 'held' });
      expect(await daemonEscrow(ids.amount.escrow_id)).toMatchObject({ state: 'held' });
      expect(await daemonEscrow(ids.finalHere.escrow_id)).toMatchObject({ state: 'held' });
      // And a second pass reports the same, without counting anything twice.
      await pass();
      const again = await report();
      expect(again.mismatches.map((m: Body) => [m.payment_id, m.kind]).sort()).toEqual(
        stored.mismatches.map((m: Body) => [m.payment_id, m.kind]).sort(),
      );
      expect(again.checked).toBe(stored.checked);
    });
  });
});
