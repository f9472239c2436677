import { createPublicKey, verify } from 'node:crypto';
import canonicalize from 'canonicalize';
import { DomainError } from '../src/common/errors';
import { PaymentsService } from '../src/payments/payments.service';
import { verifyReceipt } from '../src/receipts/receipt-signer';
import type { TestApp } from './support/app';
import { metricValue } from './support/flow';
import {
  Api,
  Body,
  diff,
  Dec,
  expectStatus,
  inBatches,
  PAYLOAD,
  sat8,
  SEED_JOB_JSON,
  startApp,
  sum,
} from './support/payments';

/**
 * Payments over HTTP against the whole app, a real PostgreSQL and the real local wallet
 * daemon: the seed's flow, refunds, explicit settlement, exactly-once under races, and
 * exact money. Balances are read back from the daemon, never inferred.
 */
jest.setTimeout(60_000);

describe('payments (e2e)', () => {
  let t: TestApp;
  let api: Api;

  beforeAll(async () => {
    t = await startApp();
    api = new Api(t);
  });
  afterAll(async () => {
    await t?.close();
  });
  afterEach(async () => {
    // Leave an empty queue for the next test's miner, and prove no money was created or lost.
    await api.cancelLiveJobs();
    await t.daemon.expectLedgerConserved('BTC');
  });

  describe("the seed's flow", () => {
    const seen: Record<string, Body> = {};

    beforeAll(async () => {
      seen.clientBefore = await api.balance(t.clientWallet);
      const created = await api.postJob('client', SEED_JOB_JSON);
      seen.createStatus = created.status;
      seen.created = created.body;
      const jobId = created.body.job_id;
      seen.paymentById = (await api.getPaymentRaw('client', created.body.payment_id)).body;
      seen.paymentByJob = (await api.jobPaymentRaw('client', jobId)).body;
      seen.clientAfterEscrow = await api.balance(t.clientWallet);

      seen.payout = await api.registerFreshMiner('miner');
      seen.payoutBefore = await api.balance(seen.payout);
      seen.polled = (await api.pollRaw('miner')).body;
      const result = await api.result('miner', jobId, { text: 'Hi there!' });
      seen.resultStatus = result.status;
      seen.completed = result.body;
      seen.payment = await api.payment(created.body.payment_id, 'client');
      seen.job = await api.job(jobId, 'client');
      seen.payoutAfter = await api.balance(seen.payout);
      seen.clientAfter = await api.balance(t.clientWallet);
      seen.receipt = await api.receipt(created.body.payment_id, 'client');
      seen.keys = await api.receiptKeys();
      seen.events = await api.events(created.body.payment_id, 'client');
      seen.transfers = await t.daemon.escrowTransfers(seen.payment.escrow_id);
    });

    it('creates the job from the seed body (JSON number amount) with an escrowed payment of "0.00100000"', () => {
      expect(seen.createStatus).toBe(201);
      expect(seen.created).toMatchObject({
        state: 'queued',
        client_id: t.principals.client,
        payload: PAYLOAD,
        constraints: {},
        ttl_seconds: 900,
        payment_status: 'escrowed',
        payment_amount: '0.00100000',
        payment_currency: 'BTC',
        payment_id: expect.any(String),
      });
      // The money left the client's wallet into the escrow when the job was accepted.
      expect(diff(seen.clientAfterEscrow, seen.clientBefore)).toBe('0.00100000');
    });

    it('answers the same payment on GET /v1/payments/{id} and GET /v1/jobs/{id}/payment', () => {
      expect(seen.paymentById).toEqual(seen.paymentByJob);
      expect(seen.paymentById).toMatchObject({
        payment_id: seen.created.payment_id,
        job_id: seen.created.job_id,
        client_id: t.principals.client,
        amount: '0.00100000',
        currency: 'BTC',
        status: 'escrowed',
        payment_method: 'escrow',
        escrow_id: expect.any(String),
        escrow_address: expect.stringMatching(/^bcrt1/),
        payer_address: t.clientWallet,
        refund_address: t.clientWallet,
        payee_address: null,
        transaction_hash: null,
        refund_transaction_hash: null,
        escrowed_at: expect.any(String),
        released_at: null,
        refunded_at: null,
      });
    });

    it('releases exactly 0.00100000 to the miner that completed it, and nothing more leaves the client', () => {
      expect(seen.polled.job_id).toBe(seen.created.job_id);
      expect(seen.resultStatus).toBe(200);
      expect(seen.completed).toMatchObject({
        state: 'completed',
        payment_status: 'released',
        assigned_miner_id: t.principals.miner,
      });
      expect(seen.job).toMatchObject({ state: 'completed', payment_status: 'released' });
      expect(seen.payment).toMatchObject({
        status: 'released',
        miner_id: t.principals.miner,
        payee_address: seen.payout,
        transaction_hash: expect.any(String),
        refund_transaction_hash: null,
        released_at: expect.any(String),
      });
      expect(diff(seen.payoutBefore, seen.payoutAfter)).toBe('0.00100000');
      expect(diff(seen.clientAfter, seen.clientBefore)).toBe('0.00100000');
      // One hold and one release at the daemon; the release is the payment's transaction.
      expect(seen.transfers.map((x: Body) => x.kind)).toEqual(['create', 'release']);
      expect(seen.transfers[1]).toMatchObject({
        amount: '0.00100000',
        to: seen.payout,
        transaction_hash: seen.payment.transaction_hash,
      });
    });

    it('signs a verified receipt that verifyReceipt accepts with the published key', () => {
      const { receipt, keys } = seen;
      expect(receipt).toMatchObject({
        payment_id: seen.created.payment_id,
        job_id: seen.created.job_id,
        client_id: t.principals.client,
        miner_id: t.principals.miner,
        amount: '0.00100000',
        currency: 'BTC',
        status: 'released',
        payer: t.clientWallet,
        payee_address: seen.payout,
        transaction_hash: seen.payment.transaction_hash,
        verified: true,
        verified_at: expect.any(String),
        signature: { alg: 'Ed25519', key_id: expect.any(String), sig: expect.any(String) },
      });
      const key = keys.find((k: Body) => k.key_id === receipt.signature.key_id);
      expect(key).toMatchObject({ alg: 'Ed25519', public_key_pem: expect.stringContaining('PUBLIC KEY') });
      expect(verifyReceipt(receipt, key.public_key_pem)).toBe(true);
    });

    it('verifies with plain node:crypto and canonicalize, as a user would', () => {
      const { signature, ...facts } = seen.receipt;
      const pem = seen.keys.find((k: Body) => k.key_id === signature.key_id).public_key_pem;
      const ok = verify(
        null,
        Buffer.from(canonicalize(facts) as string),
        createPublicKey(pem),
        Buffer.from(signature.sig, 'base64url'),
      );
      expect(ok).toBe(true);
    });

    it('fails verification after any single field is changed', () => {
      const { signature, ...facts } = seen.receipt;
      const pem = seen.keys.find((k: Body) => k.key_id === signature.key_id).public_key_pem;
      const userCheck = (r: Record<string, unknown>) =>
        verify(
          null,
          Buffer.from(canonicalize(r) as string),
          createPublicKey(pem),
          Buffer.from(signature.sig, 'base64url'),
        );
      const fields = Object.keys(facts);
      expect(fields.length).toBeGreaterThanOrEqual(15);
      for (const field of fields) {
        const original = facts[field];
        const changed = original === null ? 'x' : typeof original === 'boolean' ? !original : `${String(original)}0`;
        const tampered = { ...facts, [field]: changed };
        expect({ field, ok: verifyReceipt({ ...tampered, signature }, pem) }).toEqual({ field, ok: false });
        expect({ field, ok: userCheck(tampered) }).toEqual({ field, ok: false });
      }
      // The amount cannot be inflated either, however it is written.
      expect(verifyReceipt({ ...facts, amount: '1.00100000', signature }, pem)).toBe(false);
    });

    it('records the audit trail pending → escrowed → releasing → released, oldest first', () => {
      const { events } = seen;
      expect(events.map((e: Body) => [e.from, e.to])).toEqual([
        [null, 'pending'],
        ['pending', 'escrowed'],
        ['escrowed', 'releasing'],
        ['releasing', 'released'],
      ]);
      const times = events.map((e: Body) => Date.parse(e.at));
      expect([...times].sort((a, b) => a - b)).toEqual(times);
    });
  });

  describe('refunds and explicit settlement', () => {
    it('refunds the refund address exactly when the miner fails the job', async () => {
      const before = await api.balance(t.clientWallet);
      const job = await api.paidJob('client', { payment_amount: '0.00234567' });
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00234567');
      await api.registerFreshMiner('miner');
      await api.pollFor(job.job_id);

      const failed = await api.fail('miner', job.job_id, 'CUDA out of memory');
      expect(failed.status).toBe(200);
      expect(failed.body).toMatchObject({ state: 'failed', error: 'CUDA out of memory', payment_status: 'refunded' });
      const payment = await api.payment(job.payment_id);
      expect(payment).toMatchObject({
        status: 'refunded',
        refund_transaction_hash: expect.any(String),
        transaction_hash: null,
        refunded_at: expect.any(String),
      });
      expect(await api.balance(t.clientWallet)).toBe(before);
      const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
      expect(transfers.map((x) => x.kind)).toEqual(['create', 'refund']);
      expect(transfers[1]).toMatchObject({
        to: t.clientWallet,
        amount: '0.00234567',
        transaction_hash: payment.refund_transaction_hash,
      });
    });

    it('refunds to a separate refund address when the client cancels a queued paid job', async () => {
      const refundAddress = await t.daemon.newAddress('BTC');
      const before = await api.balance(t.clientWallet);
      const job = await api.paidJob('client', { payment_amount: '0.0005', refund_address: refundAddress });

      const canceled = await api.cancel('client', job.job_id);
      expect(canceled.status).toBe(200);
      expect(canceled.body).toMatchObject({ state: 'canceled', payment_status: 'refunded' });
      expect(await api.payment(job.payment_id, 'client')).toMatchObject({
        status: 'refunded',
        refund_address: refundAddress,
      });
      expect(await api.balance(refundAddress)).toBe('0.00050000');
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00050000');
    });

    it('refunds on POST /v1/payments/{id}/refund by the client while queued, and cancels the job', async () => {
      const before = await api.balance(t.clientWallet);
      const job = await api.paidJob('client');
      const refunded = await api.refund('client', job.payment_id, { reason: 'changed my mind' });
      expect(refunded.status).toBe(200);
      expect(refunded.body).toMatchObject({
        status: 'refunded',
        payment_id: job.payment_id,
        refund_transaction_hash: expect.any(String),
      });
      expect(await api.job(job.job_id, 'client')).toMatchObject({ state: 'canceled', payment_status: 'refunded' });
      expect(await api.balance(t.clientWallet)).toBe(before);
      // Nothing is left for a miner.
      expect((await api.pollRaw('miner')).status).toBe(204);
    });

    it("releases with the seed's body carrying the real job id, by the client after a miner polled", async () => {
      const job = await api.paidJob('client');
      const payout = await api.registerFreshMiner('miner');
      await api.pollFor(job.job_id);

      const released = await api.release(
        'client',
        job.payment_id,
        `{"job_id": "${job.job_id}", "reason": "Job completed successfully"}`,
      );
      expect(released.status).toBe(200);
      expect(released.body).toMatchObject({
        status: 'released',
        payee_address: payout,
        miner_id: t.principals.miner,
        transaction_hash: expect.any(String),
      });
      expect(await api.balance(payout)).toBe('0.00100000');
      expect(await api.job(job.job_id)).toMatchObject({ payment_status: 'released' });
      const events = await api.events(job.payment_id);
      expect(events.find((e) => e.to === 'releasing')).toMatchObject({
        actor: t.principals.client,
        reason: 'Job completed successfully',
      });
    });

    it('answers 409 PAYMENT_JOB_MISMATCH to the seed\'s literal job id "abc123" and moves nothing', async () => {
      const job = await api.paidJob('client');
      await api.registerFreshMiner('miner');
      await api.pollFor(job.job_id);

      const response = await api.release(
        'client',
        job.payment_id,
        '{"job_id": "abc123", "reason": "Job completed successfully"}',
      );
      expect(response.status).toBe(409);
      expect(response.body).toMatchObject({
        status_code: 409,
        code: 'PAYMENT_JOB_MISMATCH',
        request_id: expect.any(String),
      });
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'escrowed' });
    });

    it('answers 404 (never 500) for the payment of the seed\'s job id "abc123"', async () => {
      const response = await api.jobPaymentRaw('client', 'abc123');
      expect({ status: response.status, code: response.body?.code }).toEqual({
        status: 404,
        code: expect.stringMatching(/^(JOB|PAYMENT)_NOT_FOUND$/),
      });
      const payment = await api.getPaymentRaw('client', 'abc123');
      expect({ status: payment.status, code: payment.body?.code }).toEqual({ status: 404, code: 'PAYMENT_NOT_FOUND' });
    });

    it('refuses a release before any miner is assigned (409) and keeps the escrow', async () => {
      const job = await api.paidJob('client');
      const response = await api.release('client', job.payment_id, { job_id: job.job_id, reason: 'too early' });
      expect(response.status).toBe(409);
      expect(response.body).toMatchObject({ code: 'PAYMENT_NO_PAYEE' });
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'escrowed', payee_address: null });
    });

    it('refuses a client refund of a running job (409 REFUND_NOT_ALLOWED) but lets an admin refund it', async () => {
      const before = await api.balance(t.clientWallet);
      const job = await api.paidJob('client');
      const payout = await api.registerFreshMiner('miner');
      await api.pollFor(job.job_id);

      const byClient = await api.refund('client', job.payment_id, {});
      expect(byClient.status).toBe(409);
      expect(byClient.body).toMatchObject({ code: 'REFUND_NOT_ALLOWED' });
      expect(await api.payment(job.payment_id)).toMatchObject({ status: 'escrowed' });

      const byAdmin = await api.refund('admin', job.payment_id, { reason: 'dispute resolved for the client' });
      expect(byAdmin.status).toBe(200);
      expect(byAdmin.body).toMatchObject({ status: 'refunded' });
      expect(await api.job(job.job_id)).toMatchObject({ state: 'canceled', payment_status: 'refunded' });
      expect(await api.balance(t.clientWallet)).toBe(before);

      // The miner's late result is refused and pays nothing.
      const late = await api.result('miner', job.job_id);
      expect(late.status).toBe(409);
      expect(await api.balance(payout)).toBe('0.00000000');
    });
  });

  describe('POST /v1/payments', () => {
    it('escrows a payment for an unpaid queued job; a second payment is 409; another client gets 404', async () => {
      const before = await api.balance(t.clientWallet);
      const job = await api.unpaidJob('client');
      expect(job).toMatchObject({ payment_id: null, payment_status: null, payment_amount: null });

      const created = await api.postPayment('client', { job_id: job.job_id, amount: '0.00300000' });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        job_id: job.job_id,
        status: 'escrowed',
        amount: '0.00300000',
        currency: 'BTC',
        payer_address: t.clientWallet,
      });
      expect(await api.job(job.job_id, 'client')).toMatchObject({
        payment_id: created.body.payment_id,
        payment_status: 'escrowed',
        payment_amount: '0.00300000',
      });
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00300000');

      const second = await api.postPayment('client', { job_id: job.job_id, amount: '0.001' });
      expect(second.status).toBe(409);
      expect(second.body).toMatchObject({ code: 'JOB_ALREADY_PAID' });

      const otherJob = await api.unpaidJob('client2');
      const foreign = await api.postPayment('client', { job_id: otherJob.job_id, amount: '0.001' });
      expect(foreign.status).toBe(404);
      expect(await api.job(otherJob.job_id)).toMatchObject({ payment_id: null });
      // Only the first payment moved money.
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00300000');
    });
  });

  describe('races', () => {
    // Deadlocks and serialization failures PostgreSQL reported to the app: the lock order says none.
    const aborts = () => metricValue(t.http, 'db_transaction_aborts_total');

    it('settles once when 50 release and refund calls race on one running job, with no deadlock', async () => {
      const before = await api.balance(t.clientWallet);
      const abortsBefore = await aborts();
      const job = await api.paidJob('client', { payment_amount: '0.007' });
      const payout = await api.registerFreshMiner('miner');
      await api.pollFor(job.job_id);

      const callers: (() => ReturnType<Api['release']>)[] = [];
      for (let i = 0; i < 50; i++) {
        const kind = i % 3;
        callers.push(
          kind === 0
            ? () => api.release('client', job.payment_id, { job_id: job.job_id })
            : kind === 1
              ? () => api.refund('admin', job.payment_id, { reason: `race ${i}` })
              : () => api.release('admin', job.payment_id, {}),
        );
      }
      const responses = await Promise.all(callers.map((call) => call()));

      const winners = responses.filter((r) => r.status === 200);
      expect(winners).toHaveLength(1);
      const outcome = winners[0].body.status as string;
      expect(['released', 'refunded']).toContain(outcome);
      const inFlight = outcome === 'released' ? 'releasing' : 'refunding';
      for (const loser of responses.filter((r) => r !== winners[0])) {
        expect(loser.status).toBe(409);
        expect(loser.body).toMatchObject({
          code: 'PAYMENT_ALREADY_SETTLED',
          details: { status: expect.stringMatching(new RegExp(`^(${inFlight}|${outcome})$`)) },
        });
      }

      const payment = await api.payment(job.payment_id);
      expect(payment.status).toBe(outcome);
      const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
      expect(transfers.map((x) => x.kind)).toEqual(['create', outcome === 'released' ? 'release' : 'refund']);
      const after = await api.job(job.job_id);
      expect(after.payment_status).toBe(outcome);
      if (outcome === 'released') {
        expect(await api.balance(payout)).toBe('0.00700000');
        expect(diff(await api.balance(t.clientWallet), before)).toBe('0.00700000');
      } else {
        expect(after.state).toBe('canceled');
        expect(await api.balance(payout)).toBe('0.00000000');
        expect(await api.balance(t.clientWallet)).toBe(before);
      }
      const events = await api.events(job.payment_id);
      expect(events.filter((e) => e.from === 'escrowed')).toHaveLength(1);
      expect(await aborts()).toBe(abortsBefore);
    });

    it('gives exactly one outcome when a miner result and a client cancel arrive together (20 rounds), with no deadlock', async () => {
      const clientBefore = await api.balance(t.clientWallet);
      const abortsBefore = await aborts();
      const payout = await api.registerFreshMiner('miner');
      const outcomes: string[] = [];
      let paidToMiner = new Dec(0);

      for (let round = 0; round < 20; round++) {
        const amount = sat8(new Dec('0.0001').plus(new Dec(round).times('0.00000011')));
        const job = await api.paidJob('client', { payment_amount: amount });
        await api.pollFor(job.job_id);

        const [result, cancel] = await Promise.all([
          api.result('miner', job.job_id, { round }),
          api.cancel('client', job.job_id),
        ]);
        const statuses = [result.status, cancel.status].sort();
        expect({ round, statuses }).toEqual({ round, statuses: [200, 409] });

        const finalJob = await api.job(job.job_id);
        const payment = await api.payment(job.payment_id);
        const transfers = await t.daemon.escrowTransfers(payment.escrow_id);
        if (result.status === 200) {
          expect({ round, job: finalJob.state, payment: payment.status }).toEqual({
            round,
            job: 'completed',
            payment: 'released',
          });
          expect(transfers.map((x) => x.kind)).toEqual(['create', 'release']);
          paidToMiner = paidToMiner.plus(amount);
        } else {
          expect({ round, job: finalJob.state, payment: payment.status }).toEqual({
            round,
            job: 'canceled',
            payment: 'refunded',
          });
          expect(transfers.map((x) => x.kind)).toEqual(['create', 'refund']);
        }
        expect(finalJob.payment_status).toBe(payment.status);
        outcomes.push(finalJob.state);
      }

      // Whatever won each round, the money matches: the miner got exactly the completed jobs.
      expect(await api.balance(payout)).toBe(sat8(paidToMiner));
      expect(diff(await api.balance(t.clientWallet), clientBefore)).toBe(sat8(paidToMiner));
      expect(outcomes).toHaveLength(20);
      expect(await aborts()).toBe(abortsBefore);
    });
  });

  describe('money', () => {
    it('takes amounts as strings and as JSON numbers, exact to 8 decimals', async () => {
      const before = await api.balance(t.clientWallet);
      const asString = await api.paidJob('client', { payment_amount: '0.12345678' });
      const asNumber = await api.paidJob('client', { payment_amount: 0.12345678 });
      const shortString = await api.paidJob('client', { payment_amount: '0.5' });
      for (const job of [asString, asNumber]) {
        expect(job.payment_amount).toBe('0.12345678');
        expect((await api.payment(job.payment_id)).amount).toBe('0.12345678');
      }
      expect(shortString.payment_amount).toBe('0.50000000');
      const stored = await api.query<{ amount: string }>(
        `SELECT amount::text AS amount FROM job_payments WHERE payment_id = ANY($1::uuid[]) ORDER BY amount`,
        [[asString.payment_id, asNumber.payment_id]],
      );
      expect(stored.map((r) => r.amount)).toEqual(['0.12345678', '0.12345678']);
      expect(diff(await api.balance(t.clientWallet), before)).toBe('0.74691356');
    });

    it.each([
      ['9 decimals', '0.123456789'],
      ['9 decimals as a number', 0.123456789],
      ['zero', '0'],
      ['negative', '-0.001'],
      ['exponent string', '1e-3'],
      ['exponent number', 1e-7],
      ['not a number', 'abc'],
      ['below the BTC minimum', '0.00000545'],
      ['above the BTC maximum', '1000.00000001'],
    ])('rejects %s with 400 and writes nothing', async (_name, amount) => {
      const [{ n: jobsBefore }] = await api.query<{ n: string }>(`SELECT count(*)::text AS n FROM job`);
      const response = await api.postJob('client', { payload: PAYLOAD, payment_amount: amount });
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({
        status_code: 400,
        details: { fields: { payment_amount: expect.any(Array) } },
      });
      const [{ n: jobsAfter }] = await api.query<{ n: string }>(`SELECT count(*)::text AS n FROM job`);
      expect(jobsAfter).toBe(jobsBefore);
    });

    it('sums 1,000 payments to the satoshi: API = decimal.js = PostgreSQL = the daemon', async () => {
      // An app of its own: its database and wallets see only these payments.
      const own = await startApp();
      try {
        const ownApi = new Api(own);
        // The client pays from its configured wallet and nine more of its own (payer_address):
        // the daemon serializes escrows per payer account, so one wallet would make this slow.
        const extra: string[] = [];
        for (let i = 0; i < 9; i++) extra.push(await own.daemon.fundedAddress('1'));
        const wallets = [own.clientWallet, ...extra];
        const before = await Promise.all(wallets.map((w) => ownApi.balance(w)));
        // Small distinct amounts with all 8 decimals in play; every third sent as a JSON number.
        const amounts = Array.from({ length: 1000 }, (_, i) =>
          sat8(new Dec('0.00001').plus(new Dec(i + 1).times('0.00000777'))),
        );
        const created = await inBatches(amounts, 20, async (amount, i) => {
          const body: Record<string, unknown> = {
            payload: { n: i },
            payment_amount: i % 3 === 0 ? Number(amount) : amount,
          };
          if (i % 10 !== 0) body.payer_address = wallets[i % 10];
          return expectStatus(await ownApi.postJob('client', body), 201, `POST /v1/jobs #${i}`);
        });
        const wrong = created.filter(
          (job, i) => job.payment_status !== 'escrowed' || job.payment_amount !== amounts[i],
        );
        expect(wrong).toEqual([]);

        const expected = sat8(sum(amounts));
        expect(sat8(sum(created.map((j) => j.payment_amount)))).toBe(expected);
        // Read back through the list API, page by page.
        const listed: Body[] = [];
        let cursor: string | null = null;
        do {
          const page: Body = expectStatus(
            await own.http
              .get('/v1/jobs')
              .query({ limit: 100, ...(cursor ? { cursor } : {}) })
              .set('X-Api-Key', own.keys.client),
            200,
            'GET /v1/jobs',
          );
          listed.push(...page.items);
          cursor = page.next_cursor;
        } while (cursor);
        expect(new Set(listed.map((j) => j.job_id)).size).toBe(1000);
        expect(sat8(sum(listed.map((j) => j.payment_amount)))).toBe(expected);

        const [{ total, n }] = await ownApi.query<{ total: string; n: string }>(
          `SELECT sum(amount)::text AS total, count(*)::text AS n FROM job_payments WHERE status = 'escrowed'`,
        );
        expect(n).toBe('1000');
        expect(sat8(total)).toBe(expected);

        // At the daemon: each wallet fell by exactly what it paid, and all of them by the total.
        const after = await Promise.all(wallets.map((w) => ownApi.balance(w)));
        const fell = wallets.map((_, w) => diff(after[w], before[w]));
        expect(fell).toEqual(wallets.map((_, w) => sat8(sum(amounts.filter((_a, i) => i % 10 === w)))));
        expect(sat8(sum(fell))).toBe(expected);
        await own.daemon.expectLedgerConserved('BTC');
      } finally {
        await own.close();
      }
    }, 120_000);
  });

  describe('PaymentsService used directly', () => {
    it('prepareTerms rejects a bad amount with a DomainError before anything is written', () => {
      const payments = t.app.get(PaymentsService);
      const client = { role: 'client' as const, id: t.principals.client, walletAddress: t.clientWallet };
      expect(payments.prepareTerms(client, { amount: '0.001' })).toMatchObject({
        amount: '0.00100000',
        payerAddress: t.clientWallet,
        refundAddress: t.clientWallet,
      });
      for (const amount of ['0.000000001', '-1', '0', 'NaN', 1e-7, '1e-3', null, undefined, { value: 1 }]) {
        let thrown: unknown;
        try {
          payments.prepareTerms(client, { amount });
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(DomainError);
        expect({ amount, code: (thrown as DomainError).code, status: (thrown as DomainError).status }).toEqual({
          amount,
          code: 'INVALID_AMOUNT',
          status: 400,
        });
      }
    });

    it("get() hides another principal's payment as PAYMENT_NOT_FOUND", async () => {
      const payments = t.app.get(PaymentsService);
      const job = await api.paidJob('client');
      const owner = { role: 'client' as const, id: t.principals.client };
      const other = { role: 'client' as const, id: t.principals.client2 };
      const miner = { role: 'miner' as const, id: t.principals.miner };
      await expect(payments.get(owner, job.payment_id)).resolves.toMatchObject({
        payment_id: job.payment_id,
        status: 'escrowed',
      });
      await expect(payments.get(other, job.payment_id)).rejects.toMatchObject({ code: 'PAYMENT_NOT_FOUND' });
      await expect(payments.get(miner, job.payment_id)).rejects.toMatchObject({ code: 'PAYMENT_NOT_FOUND' });
      await expect(payments.get(other, job.payment_id)).rejects.toBeInstanceOf(DomainError);
      // Over HTTP the same rule is a 404, for the payment and for the job's payment.
      expect((await api.getPaymentRaw('client2', job.payment_id)).status).toBe(404);
      expect((await api.jobPaymentRaw('client2', job.job_id)).status).toBe(404);
    });
  });
});
