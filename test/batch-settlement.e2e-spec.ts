import { createServer, request as httpRequest, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JobsService } from '../src/jobs/jobs.service';
import { PaymentsService } from '../src/payments/payments.service';
import { startTestApp, TestApp } from './support/app';
import { startPrivateDaemon, PrivateDaemon, WalletDaemonHelper } from './support/daemon';
import { createPaidJob, getPayment, kinds, mapConcurrent, metricValue, paymentEvents, query } from './support/flow';

// The sweeps settle decided escrows in batches (POST /api/v1/escrow/settle-batch, one
// daemon commit per batch) and record them in one transaction per batch. Each item is
// still exactly the single settlement: its own key, its own events, its own failure
// handling. Real PostgreSQL, real daemon processes, HTTP.
describe('batch settlement in the sweeps', () => {
  let own: PrivateDaemon;

  beforeAll(async () => {
    own = await startPrivateDaemon();
  });

  afterAll(async () => {
    await own?.stop();
  });

  /** Paid, escrowed jobs whose deadline has passed, so the next sweep refunds them. */
  async function dueEscrows(t: TestApp, n: number): Promise<string[]> {
    const jobs = await mapConcurrent(Array.from({ length: n }), 8, () =>
      createPaidJob(t.http, t.keys.client, { amount: '0.0001' }),
    );
    const jobIds = jobs.map((j) => j.job_id);
    await query(
      t.databaseUrl,
      `UPDATE job SET expires_at = now() - interval '1 second' WHERE job_id = ANY($1::uuid[])`,
      [jobIds],
    );
    return jobs.map((j) => j.payment_id);
  }

  const batchCalls = (t: TestApp) =>
    metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_settle_batch' });
  const refundCalls = (t: TestApp) =>
    metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call: 'escrow_refund' });

  it('refunds 25 due escrows with batches of 10: three daemon calls, each payment refunded with its own event, escrow record and transfer', async () => {
    const t = await startTestApp({ WALLET_DAEMON_BATCH_SIZE: '10' }, { daemon: own.daemon });
    try {
      const paymentIds = await dueEscrows(t, 25);
      await expect(t.app.get(JobsService).expireDue()).resolves.toBe(25);

      expect(await batchCalls(t)).toBe(3);
      expect(await refundCalls(t)).toBe(0);
      for (const paymentId of paymentIds) {
        const payment = await getPayment(t.http, t.keys.client, paymentId);
        expect(payment).toMatchObject({ status: 'refunded', settle_reason: 'job_expired' });
        const events = await paymentEvents(t.http, t.keys.client, paymentId);
        expect(events.at(-1)).toMatchObject({ from: 'refunding', to: 'refunded', actor: 'wallet-daemon' });
        const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
        expect(kinds(transfers)).toEqual(['create', 'refund']);
        expect(transfers[1].transaction_hash).toBe(payment.refund_transaction_hash);
      }
      const [escrows] = await query(
        t.databaseUrl,
        `SELECT count(*) FILTER (WHERE is_refunded AND NOT is_active)::int AS refunded, count(*)::int AS n
                                                      FROM payment_escrows WHERE payment_id = ANY($1::uuid[])`,
        [paymentIds],
      );
      expect(escrows).toEqual({ refunded: 25, n: 25 });
      await t.daemon.expectLedgerConserved();
    } finally {
      await t.close();
    }
  });

  it('sweeps 35 due escrows in batches of 10 with a slow daemon, two batches settling at once: each payment refunded once, the books equal', async () => {
    const t = await startTestApp({ WALLET_DAEMON_BATCH_SIZE: '10' }, { daemon: own.daemon });
    try {
      const paymentIds = await dueEscrows(t, 35);
      const heldBefore = await query<{ held: string }>(
        t.databaseUrl,
        `SELECT coalesce(sum(amount), 0)::text AS held FROM job_payments WHERE status = 'escrowed'`,
      );
      // Each settle-batch call takes 300 ms, far longer than deciding the next batch: the
      // second batch settles while the first is still at the daemon.
      await own.daemon.setFaults({ latency_ms: 300 });
      try {
        await expect(t.app.get(JobsService).expireDue(10)).resolves.toBe(35);
      } finally {
        await own.daemon.resetFaults();
      }

      expect(await batchCalls(t)).toBe(4);
      for (const paymentId of paymentIds) {
        const payment = await getPayment(t.http, t.keys.client, paymentId);
        expect(payment).toMatchObject({ status: 'refunded', settle_reason: 'job_expired' });
        const events = await paymentEvents(t.http, t.keys.client, paymentId);
        expect(events.filter((e: { to: string }) => e.to === 'refunded')).toHaveLength(1);
        expect(kinds(await t.daemon.escrowTransfers(payment.escrow_id))).toEqual(['create', 'refund']);
      }
      const [after] = await query<{ escrowed: string; refunded: string }>(
        t.databaseUrl,
        `SELECT coalesce(sum(amount) FILTER (WHERE status = 'escrowed'), 0)::text AS escrowed,
                coalesce(sum(amount) FILTER (WHERE status = 'refunded' AND payment_id = ANY($1::uuid[])), 0)::text AS refunded
           FROM job_payments`,
        [paymentIds],
      );
      expect(after).toEqual({ escrowed: '0', refunded: '0.00350000' });
      expect(heldBefore[0].held).toBe('0.00350000');
      await t.daemon.expectLedgerConserved();
    } finally {
      await t.close();
    }
  });

  it('an item the daemon refuses is reconciled on its own; the rest of the batch is recorded', async () => {
    const t = await startTestApp({ WALLET_DAEMON_BATCH_SIZE: '200' }, { daemon: own.daemon });
    try {
      const paymentIds = await dueEscrows(t, 4);
      // Somebody refunds one escrow at the daemon behind the coordinator's back, under another key.
      const [taken] = await query(
        t.databaseUrl,
        `SELECT escrow_id, escrow_address, amount::text, refund_address FROM job_payments WHERE payment_id = $1`,
        [paymentIds[0]],
      );
      const direct = await fetch(`${own.daemon.endpoint.url}/api/v1/refund`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${own.daemon.endpoint.token}`,
          'content-type': 'application/json',
          'idempotency-key': 'behind-the-back',
        },
        body: JSON.stringify({
          escrow_id: taken.escrow_id,
          address: taken.escrow_address,
          refund_address: taken.refund_address,
          amount: taken.amount,
          reason: 'manual',
        }),
      });
      expect(direct.status).toBe(200);
      const directHash = ((await direct.json()) as { transaction_hash: string }).transaction_hash;

      await expect(t.app.get(JobsService).expireDue()).resolves.toBe(4);
      expect(await batchCalls(t)).toBe(1);
      // The refused item: the daemon says the escrow was refunded, which is what was decided, so that refund is recorded.
      await expect(getPayment(t.http, t.keys.client, paymentIds[0])).resolves.toMatchObject({
        status: 'refunded',
        refund_transaction_hash: directHash,
      });
      for (const paymentId of paymentIds.slice(1)) {
        await expect(getPayment(t.http, t.keys.client, paymentId)).resolves.toMatchObject({ status: 'refunded' });
      }
      await t.daemon.expectLedgerConserved();
    } finally {
      await t.close();
    }
  });

  it('a daemon that cannot answer leaves the batch decided and leased; the re-drive settles it once the daemon is back', async () => {
    const t = await startTestApp(
      { WALLET_DAEMON_BATCH_SIZE: '200', WALLET_DAEMON_RETRIES: '0' },
      { daemon: own.daemon },
    );
    try {
      const paymentIds = await dueEscrows(t, 5);
      await own.daemon.setFaults({ fail_rate: 1 });
      try {
        await t.app.get(JobsService).expireDue();
      } finally {
        await own.daemon.resetFaults();
      }
      // Leased: each row's next attempt was put ahead of the database's clock at the moment the failure was
      // written (`updated_at`, same statement), so no re-drive takes it before then.
      const waiting = await query(
        t.databaseUrl,
        `SELECT status, last_error, next_attempt_at IS NOT NULL AS leased,
                EXTRACT(EPOCH FROM next_attempt_at - updated_at) * 1000 AS lease_ms
           FROM job_payments WHERE payment_id = ANY($1::uuid[])`,
        [paymentIds],
      );
      expect(waiting).toHaveLength(5);
      for (const row of waiting) {
        expect(row).toMatchObject({
          status: 'refunding',
          last_error: expect.stringContaining('escrow_refund'),
          leased: true,
        });
        expect(Number(row.lease_ms)).toBeGreaterThan(0);
      }

      await query(t.databaseUrl, `UPDATE job_payments SET next_attempt_at = now() WHERE payment_id = ANY($1::uuid[])`, [
        paymentIds,
      ]);
      await expect(t.app.get(PaymentsService).redriveDue()).resolves.toBe(5);
      for (const paymentId of paymentIds) {
        await expect(getPayment(t.http, t.keys.client, paymentId)).resolves.toMatchObject({ status: 'refunded' });
      }
      await t.daemon.expectLedgerConserved();
    } finally {
      await t.close();
    }
  });

  it('WALLET_DAEMON_BATCH_SIZE=0 settles one escrow per call', async () => {
    const t = await startTestApp({ WALLET_DAEMON_BATCH_SIZE: '0' }, { daemon: own.daemon });
    try {
      const paymentIds = await dueEscrows(t, 3);
      await expect(t.app.get(JobsService).expireDue()).resolves.toBe(3);
      expect(await batchCalls(t)).toBe(0);
      expect(await refundCalls(t)).toBe(3);
      for (const paymentId of paymentIds) {
        await expect(getPayment(t.http, t.keys.client, paymentId)).resolves.toMatchObject({ status: 'refunded' });
      }
    } finally {
      await t.close();
    }
  });

  it('a daemon without the settle-batch route (404) gets one call per escrow, from then on', async () => {
    const proxy = await withoutBatchRoute(own.daemon.endpoint.url);
    // (startTestApp's settings stay in process.env: every test here names its batch size.)
    const t = await startTestApp(
      { WALLET_DAEMON_BATCH_SIZE: '200' },
      { daemon: new WalletDaemonHelper({ url: proxy.url, token: own.daemon.endpoint.token }) },
    );
    try {
      const first = await dueEscrows(t, 3);
      await expect(t.app.get(JobsService).expireDue()).resolves.toBe(3);
      const second = await dueEscrows(t, 2);
      await expect(t.app.get(JobsService).expireDue()).resolves.toBe(2);

      expect(proxy.batchCalls()).toBe(1);
      expect(await refundCalls(t)).toBe(5);
      for (const paymentId of [...first, ...second]) {
        await expect(getPayment(t.http, t.keys.client, paymentId)).resolves.toMatchObject({ status: 'refunded' });
      }
    } finally {
      await t.close();
      await proxy.close();
    }
  });
});

/** An HTTP pass-through to the daemon that answers 404 for settle-batch, as a daemon without that route would. */
async function withoutBatchRoute(
  target: string,
): Promise<{ url: string; batchCalls(): number; close(): Promise<void> }> {
  let batchCalls = 0;
  const server: Server = createServer((req, res) => {
    if (req.url === '/api/v1/escrow/settle-batch') {
      batchCalls++;
      req.resume();
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ code: 'NOT_FOUND', message: 'no such route' }));
      return;
    }
    const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    batchCalls: () => batchCalls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
