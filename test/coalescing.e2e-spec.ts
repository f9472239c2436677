import { Client } from 'pg';
import request from 'supertest';
import { Money } from '../src/common/money';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { DaemonProxy, startDaemonProxy } from './support/daemon-proxy';
import {
  claimJob,
  createPaidJob,
  getPayment,
  kinds,
  metricValue,
  paymentEvents,
  query,
  registerMiner,
  waitFor,
} from './support/flow';
import { spawnCoordinator, stopAllCoordinators } from './support/processes';

// Coalescing (README "Batch operations"): concurrent single requests of one kind are
// carried out as one group — one transaction, one daemon batch call, one recording —
// and each request still gets exactly its own answer. The daemon is made slow while the
// first request is in flight, so the others certainly arrive meanwhile and form a group.
describe('coalesced single requests', () => {
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
    await pd.daemon.resetFaults();
    await pd.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await stopAllCoordinators();
    await t?.close();
    await pd?.stop();
  });

  const daemonCalls = async (...calls: string[]) => {
    let total = 0;
    for (const call of calls)
      total += await metricValue(t.http, 'wallet_daemon_request_duration_seconds_count', { call });
    return total;
  };

  it('30 concurrent POST /v1/jobs by two clients: a few daemon calls, each request its own job, amount, owner and hold; a refused one fails alone', async () => {
    const emptyPayer = await pd.daemon.newAddress();
    const callsBefore = await daemonCalls('escrow_create', 'escrow_create_batch');
    const heldBefore = new Money((await pd.daemon.ledgerTotals()).held);
    await pd.daemon.setFaults({ latency_ms: 1000 });
    const asks = Array.from({ length: 30 }, (_, i) => ({
      key: i % 2 ? t.keys.client2 : t.keys.client,
      owner: i % 2 ? t.principals.client2 : t.principals.client,
      amount: new Money('0.00001').times(i + 1).toFixed(8),
      // One create whose payer cannot pay: its job fails, its neighbours are held.
      payer: i === 17 ? emptyPayer : undefined,
    }));
    const answers = await Promise.all(
      asks.map((ask) =>
        t.http
          .post('/v1/jobs')
          .set('X-Api-Key', ask.key)
          .send({
            payload: { job_type: 'ai_inference' },
            payment_amount: ask.amount,
            ...(ask.payer ? { payer_address: ask.payer } : {}),
          }),
      ),
    );
    await pd.daemon.resetFaults();

    const calls = (await daemonCalls('escrow_create', 'escrow_create_batch')) - callsBefore;
    expect(calls).toBeLessThan(10);
    expect(await daemonCalls('escrow_create_batch')).toBeGreaterThanOrEqual(1);
    expect(new Set(answers.map((a) => a.body.job_id)).size).toBe(30);
    let held = new Money(0);
    for (const [i, answer] of answers.entries()) {
      expect(answer.status).toBe(201);
      expect(answer.body).toMatchObject({
        client_id: asks[i].owner,
        payment_amount: asks[i].amount,
        state: i === 17 ? 'failed' : 'queued',
        payment_status: i === 17 ? 'failed' : 'escrowed',
      });
      const [row] = await query<{ client_id: string; amount: string; escrow_id: string | null }>(
        t.databaseUrl,
        `SELECT client_id, amount, escrow_id FROM job_payments WHERE job_id = $1`,
        [answer.body.job_id],
      );
      expect([row.client_id, new Money(row.amount).eq(asks[i].amount)]).toEqual([asks[i].owner, true]);
      if (i !== 17) {
        expect(kinds(await pd.daemon.escrowTransfers(row.escrow_id!))).toEqual(['create']);
        held = held.plus(asks[i].amount);
      }
    }
    expect(new Money((await pd.daemon.ledgerTotals()).held).eq(heldBefore.plus(held))).toBe(true);
  });

  it('concurrent single releases and refunds, two of them racing on one payment: each settles once, the loser gets 409, in few daemon calls', async () => {
    const jobs = [];
    for (let i = 0; i < 16; i++) jobs.push(await createPaidJob(t.http, t.keys.client, { amount: '0.00003' }));
    for (const job of jobs.slice(0, 8)) await claimJob(t.http, t.keys.miner, job.job_id);
    const callsBefore = await daemonCalls('escrow_release', 'escrow_refund', 'escrow_settle_batch');
    await pd.daemon.setFaults({ latency_ms: 1000 });
    const settle = (paymentId: string, action: string) =>
      t.http.post(`/v1/payments/${paymentId}/${action}`).set('X-Api-Key', t.keys.admin).send({});
    const answers = await Promise.all([
      ...jobs.slice(0, 8).map((job) => settle(job.payment_id, 'release')),
      ...jobs.slice(8).map((job) => settle(job.payment_id, 'refund')),
      // The same payment asked twice at once (both queue behind the first request's group).
      settle(jobs[15].payment_id, 'release'),
    ]);
    await pd.daemon.resetFaults();

    expect(answers.slice(0, 8).map((a) => [a.status, a.body.status])).toEqual(
      jobs.slice(0, 8).map(() => [200, 'released']),
    );
    const raced = [answers[15], answers[16]].map((a) => a.status).sort();
    expect(raced).toEqual([200, 409]);
    expect([answers[15], answers[16]].find((a) => a.status === 409)!.body.code).toMatch(
      /^PAYMENT_(ALREADY_SETTLED|NO_PAYEE)$/,
    );
    expect(answers.slice(8, 15).map((a) => [a.status, a.body.status])).toEqual(
      jobs.slice(8, 15).map(() => [200, 'refunded']),
    );
    expect((await daemonCalls('escrow_release', 'escrow_refund', 'escrow_settle_batch')) - callsBefore).toBeLessThan(8);
    for (const job of jobs) {
      const settled = (await paymentEvents(t.http, t.keys.admin, job.payment_id)).filter(
        (e: { to: string }) => e.to === 'released' || e.to === 'refunded',
      );
      expect(settled).toHaveLength(1);
    }
  });

  /**
   * Sends the requests `send` starts (each already sent: `.then` on supertest) while another
   * connection holds job_payments in `mode`: the first goes alone and waits on the lock, the
   * others must queue behind it; once `waiting` of them do, the lock goes and they run as a
   * group. The answers, in order.
   */
  async function heldBehindFirst<T>(
    mode: string,
    kind: string,
    waiting: number,
    send: () => Promise<T>[],
  ): Promise<T[]> {
    const blocker = new Client({ connectionString: t.databaseUrl });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE job_payments IN ${mode} MODE`);
      const sent = send();
      await waitFor(`${waiting} ${kind} requests waiting behind the first`, async () =>
        (await metricValue(t.http, 'coalescer_waiting_requests', { kind })) === waiting ? true : undefined,
      );
      await blocker.query('COMMIT');
      return await Promise.all(sent);
    } finally {
      await blocker.end();
    }
  }

  /** The coalesced group sizes of `kind` so far: how many groups, and how many requests in them. */
  const groups = async (kind: string) => ({
    count: await metricValue(t.http, 'coalesced_group_size_count', { kind }),
    requests: await metricValue(t.http, 'coalesced_group_size_sum', { kind }),
  });

  it('16 concurrent polls by two miners while the first is held up: one more statement claims a distinct job for each of the 15 others, each paid to its own miner', async () => {
    const payout2 = await pd.daemon.newAddress();
    await registerMiner(t.http, t.keys.miner2, payout2);
    for (let i = 0; i < 16; i++) await createPaidJob(t.http, t.keys.client, { amount: '0.00002' });
    const before = await groups('poll');
    // The first poll goes alone and waits on the lock (it records its payee on job_payments).
    const answers = await heldBehindFirst('EXCLUSIVE', 'poll', 15, () =>
      Array.from({ length: 16 }, (_, i) => {
        const key = i % 2 ? t.keys.miner2 : t.keys.miner;
        return t.http
          .post('/v1/miners/poll')
          .set('X-Api-Key', key)
          .send({})
          .then((r) => ({ r, key }));
      }),
    );

    expect(answers.map(({ r }) => r.status)).toEqual(answers.map(() => 200));
    const jobIds = answers.map(({ r }) => r.body.job_id as string);
    expect(new Set(jobIds).size).toBe(16);
    const after = await groups('poll');
    expect({ groups: after.count - before.count, polls: after.requests - before.requests }).toEqual({
      groups: 2,
      polls: 16,
    });
    const rows = await query<{ job_id: string; state: string; assigned_miner_id: string; payee_address: string }>(
      t.databaseUrl,
      `SELECT j.job_id, j.state, j.assigned_miner_id, p.payee_address
         FROM job j JOIN job_payments p ON p.payment_id = j.payment_id WHERE j.job_id = ANY($1::uuid[])`,
      [jobIds],
    );
    const byJob = new Map(rows.map((row) => [row.job_id, row]));
    for (const { r, key } of answers) {
      const miner = key === t.keys.miner ? t.principals.miner : t.principals.miner2;
      expect(byJob.get(r.body.job_id)).toEqual({
        job_id: r.body.job_id,
        state: 'running',
        assigned_miner_id: miner,
        payee_address: miner === t.principals.miner ? payout : payout2,
      });
    }
  });

  it("16 concurrent GET /v1/payments/{id} by two clients while the first is held up: the 14 others with a uuid in one statement, each caller its own payment; another client's, an unknown and a malformed id are 404, an upper-case id is found", async () => {
    const mine = [];
    const theirs = [];
    for (let i = 0; i < 4; i++) mine.push(await createPaidJob(t.http, t.keys.client, { amount: '0.00004' }));
    for (let i = 0; i < 4; i++) theirs.push(await createPaidJob(t.http, t.keys.client2, { amount: '0.00005' }));
    const unknown = '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c';
    const asks: { key: string; id: string; expect: number }[] = [
      ...mine.map((job) => ({ key: t.keys.client, id: job.payment_id as string, expect: 200 })),
      ...theirs.map((job) => ({ key: t.keys.client2, id: job.payment_id as string, expect: 200 })),
      // Each asked for by both: the owner reads it, the other client is told it does not exist.
      ...mine.slice(0, 3).map((job) => ({ key: t.keys.client2, id: job.payment_id as string, expect: 404 })),
      { key: t.keys.client, id: theirs[0].payment_id.toUpperCase(), expect: 404 },
      { key: t.keys.client2, id: theirs[1].payment_id.toUpperCase(), expect: 200 },
      { key: t.keys.admin, id: mine[3].payment_id, expect: 200 },
      { key: t.keys.client, id: unknown, expect: 404 },
      { key: t.keys.client, id: 'not-a-uuid', expect: 404 },
    ];
    const before = await groups('payment_read');
    // The first read goes alone and waits on the lock (reads take ACCESS SHARE); the malformed
    // id never reaches the coalescer, so 14 wait behind the first.
    const answers = await heldBehindFirst('ACCESS EXCLUSIVE', 'payment_read', 14, () =>
      asks.map((ask) =>
        t.http
          .get(`/v1/payments/${ask.id}`)
          .set('X-Api-Key', ask.key)
          .then((r) => r),
      ),
    );

    expect(answers.map((a) => a.status)).toEqual(asks.map((ask) => ask.expect));
    asks.forEach((ask, i) => {
      const body = answers[i].body;
      if (ask.expect === 200) expect(body.payment_id).toBe(ask.id.toLowerCase());
      else expect(body.code).toBe('PAYMENT_NOT_FOUND');
    });
    const owners = answers.filter((a) => a.status === 200).map((a) => [a.body.payment_id, a.body.client_id]);
    const all = [...mine, ...theirs];
    const ownerOf = new Map(all.map((job, i) => [job.payment_id, i < 4 ? t.principals.client : t.principals.client2]));
    for (const [paymentId, clientId] of owners) expect(clientId).toBe(ownerOf.get(paymentId));
    const after = await groups('payment_read');
    expect({ groups: after.count - before.count, reads: after.requests - before.requests }).toEqual({
      groups: 2,
      reads: 15,
    });
  });

  it("concurrent results and failures by two miners: settled in few daemon calls, each report its own answer, each payment once; another miner's job and a repeated report are refused alone", async () => {
    const payout2 = await pd.daemon.newAddress();
    await registerMiner(t.http, t.keys.miner2, payout2);
    const mine = [];
    const theirs = [];
    for (let i = 0; i < 6; i++) {
      const a = await createPaidJob(t.http, t.keys.client, { amount: '0.00004' });
      mine.push({ ...a, ...(await claimJob(t.http, t.keys.miner, a.job_id)) });
      const b = await createPaidJob(t.http, t.keys.client, { amount: '0.00004' });
      theirs.push({ ...b, ...(await claimJob(t.http, t.keys.miner2, b.job_id)) });
    }
    const before = await groups('report');
    const callsBefore = await daemonCalls('escrow_release', 'escrow_refund', 'escrow_settle_batch');
    const minerBefore = new Money(await pd.daemon.balance(payout));
    await pd.daemon.setFaults({ latency_ms: 1000 });
    const result = (key: string, jobId: string) =>
      t.http
        .post(`/v1/miners/jobs/${jobId}/result`)
        .set('X-Api-Key', key)
        .send({ result: { text: 'done' } });
    const fail = (key: string, jobId: string) =>
      t.http.post(`/v1/miners/jobs/${jobId}/fail`).set('X-Api-Key', key).send({ error: 'out of memory' });
    const answers = await Promise.all([
      ...mine.slice(0, 5).map((job) => result(t.keys.miner, job.job_id)),
      fail(t.keys.miner, mine[5].job_id),
      ...theirs.slice(0, 5).map((job) => result(t.keys.miner2, job.job_id)),
      // Not miner2's job: refused, as alone, while its neighbours go on.
      result(t.keys.miner2, mine[0].job_id),
      // The same report twice: one completes the job, the other finds it completed.
      result(t.keys.miner2, theirs[5].job_id),
      result(t.keys.miner2, theirs[5].job_id),
    ]);
    await pd.daemon.resetFaults();

    expect(answers.slice(0, 5).map((a) => [a.status, a.body.state])).toEqual(
      mine.slice(0, 5).map(() => [200, 'completed']),
    );
    expect([answers[5].status, answers[5].body.state]).toEqual([200, 'failed']);
    expect(answers.slice(6, 11).map((a) => [a.status, a.body.state])).toEqual(
      theirs.slice(0, 5).map(() => [200, 'completed']),
    );
    expect([answers[11].status, answers[11].body.code]).toEqual([409, 'JOB_NOT_ASSIGNED']);
    expect([answers[12].status, answers[13].status].sort()).toEqual([200, 409]);
    const after = await groups('report');
    expect(after.requests - before.requests).toBe(14);
    expect(after.count - before.count).toBeLessThan(14);
    expect((await daemonCalls('escrow_release', 'escrow_refund', 'escrow_settle_batch')) - callsBefore).toBeLessThan(8);

    const expected = [
      ...mine.slice(0, 5).map((job) => [job.payment_id, 'released', payout]),
      [mine[5].payment_id, 'refunded', null],
      ...theirs.map((job) => [job.payment_id, 'released', payout2]),
    ];
    for (const [paymentId, status, payee] of expected) {
      const payment = await getPayment(t.http, t.keys.admin, paymentId as string);
      expect(payment.status).toBe(status);
      if (payee) expect(payment.payee_address).toBe(payee);
      const settled = (await paymentEvents(t.http, t.keys.admin, paymentId as string)).filter(
        (e: { to: string }) => e.to === 'released' || e.to === 'refunded',
      );
      expect(settled).toHaveLength(1);
    }
    expect(new Money(await pd.daemon.balance(payout)).minus(minerBefore).toFixed(8)).toBe('0.00020000');
  });

  it('SIGKILL while a coalesced group of creates waits on the daemon: after a restart the re-drive holds each payment exactly once', async () => {
    const proxy: DaemonProxy = await startDaemonProxy(pd.daemon.endpoint.url);
    // No other test in this file pays this amount: it tells this test's payments apart.
    const amount = '0.00047';
    const ours = async () =>
      query<{ payment_id: string; status: string; escrow_id: string | null }>(
        t.databaseUrl,
        `SELECT payment_id, status, escrow_id FROM job_payments WHERE amount = $1`,
        [amount],
      );
    try {
      const heldBefore = new Money((await pd.daemon.ledgerTotals()).held);
      const a = await spawnCoordinator(t, {
        WALLET_DAEMON_URL: proxy.url,
        SWEEPS_ENABLED: 'false',
        WALLET_DAEMON_TIMEOUT_MS: '120000',
        WALLET_DAEMON_RETRIES: '0',
      });
      // The first create is slow, so the others queue behind it and go as one group; the daemon
      // applies the group's create-batch, and its answer never reaches the coordinator.
      await pd.daemon.setFaults({ latency_ms: 1000 });
      proxy.holdAnswers((call) => call.path === '/api/v1/escrow/create-batch');
      const inFlight = Array.from({ length: 20 }, () =>
        request(a.url)
          .post('/v1/jobs')
          .set('X-Api-Key', t.keys.client)
          .send({ payload: { job_type: 'ai_inference' }, payment_amount: amount })
          .then(
            (r) => r.status,
            () => 'killed',
          ),
      );
      await waitFor(
        "a group's create-batch to be applied at the daemon",
        async () => proxy.calls.some((call) => call.path === '/api/v1/escrow/create-batch' && call.status === 200),
        30_000,
      );
      await a.kill();
      await pd.daemon.resetFaults();
      const killed = (await Promise.all(inFlight)).filter((status) => status === 'killed').length;
      // Committed, held at the daemon, not recorded: the group is pending in the coordinator's books.
      const pending = (await ours()).filter((p) => p.status === 'pending');
      expect(pending.length).toBeGreaterThanOrEqual(2);
      expect(killed).toBeGreaterThanOrEqual(pending.length);

      // The restarted instance's re-drive (leases ended at once) repeats each create with its key.
      await query(t.databaseUrl, `UPDATE job_payments SET next_attempt_at = now() WHERE status = 'pending'`);
      proxy.holdAnswers(undefined);
      const b = await spawnCoordinator(t, { WALLET_DAEMON_URL: proxy.url, REDRIVE_INTERVAL_MS: '100' });
      await waitFor(
        'the re-drive to escrow every payment',
        async () => (await ours()).every((p) => p.status === 'escrowed'),
        60_000,
        100,
      );
      const payments = await ours();
      for (const payment of payments)
        expect(kinds(await pd.daemon.escrowTransfers(payment.escrow_id!))).toEqual(['create']);
      expect({ count: payments.length, held: (await pd.daemon.ledgerTotals()).held }).toEqual({
        count: payments.length,
        held: heldBefore.plus(new Money(amount).times(payments.length)).toFixed(8),
      });
      await b.stop();
    } finally {
      await proxy.close();
    }
  });
});
