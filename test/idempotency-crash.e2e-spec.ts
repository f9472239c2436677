import { Client } from 'pg';
import request from 'supertest';
import { Money } from '../src/common/money';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { DaemonProxy, startDaemonProxy } from './support/daemon-proxy';
import { claimJob, createPaidJob, kinds, paymentEvents, query, registerMiner, waitFor } from './support/flow';
import { CoordinatorProcess, spawnCoordinator, stopAllCoordinators } from './support/processes';

// Idempotency that survives a crash (README "Idempotency"): the coordinator instance
// running a request is killed (SIGKILL) at each point of it, and the client retries the
// same Idempotency-Key on another instance. Every retry ends with one job, one payment,
// one hold or settlement at the daemon, the answer an uninterrupted call gives, and a
// balanced ledger. Each kill point is reached deterministically: the dying instance is
// held there by a database lock the test owns, or by a daemon that keeps its answer.

type CreatePoint = 'after the claim' | 'after the job commit' | 'after the daemon hold' | 'before the answer';
type ReleasePoint = 'after the claim' | 'after the decision commit' | 'after the daemon settled' | 'before the answer';

/** The lease is long: a test ends it in the database when it wants "the lease has passed". */
const LONG_LEASE = { IDEMPOTENCY_LEASE_MS: '60000' };
/** The instances only do what their requests do: no sweep or re-drive finishes the work for the retry. */
const NO_BACKGROUND = { SWEEPS_ENABLED: 'false', WALLET_DAEMON_TIMEOUT_MS: '120000', WALLET_DAEMON_RETRIES: '0' };

describe('Idempotency-Key across a crash of the instance running the request', () => {
  let pd: PrivateDaemon;
  let t: TestApp;
  let proxy: DaemonProxy;
  let b: CoordinatorProcess;
  let httpB: request.Agent;
  let payout: string;

  beforeAll(async () => {
    pd = await startPrivateDaemon();
    t = await startTestApp({}, { daemon: pd.daemon });
    proxy = await startDaemonProxy(pd.daemon.endpoint.url);
    // The instance the client retries on.
    b = await spawnCoordinator(t, { ...LONG_LEASE, ...NO_BACKGROUND, WALLET_DAEMON_URL: proxy.url });
    httpB = request(b.url);
    payout = await pd.daemon.newAddress();
    await registerMiner(httpB, t.keys.miner, payout);
  });

  afterEach(async () => {
    proxy.holdAnswers(undefined);
    proxy.holdRequests(undefined);
    await pd.daemon.expectLedgerConserved();
  });

  afterAll(async () => {
    await stopAllCoordinators();
    await t?.close();
    await proxy?.close();
    await pd?.stop();
  });

  const db = (text: string, params: unknown[] = []) => query(t.databaseUrl, text, params);
  const keyRow = async (key: string) =>
    (await db(`SELECT claim_token, recovery, status_code FROM idempotency_keys WHERE key = $1`, [key]))[0];
  /** "The lease has passed", without waiting for it. */
  const endLease = (key: string) =>
    db(`UPDATE idempotency_keys SET locked_until = now() - interval '1 millisecond' WHERE key = $1`, [key]);
  /** Some coordinator backend of this database is waiting for a lock the test holds. */
  const blockedOnLock = () =>
    waitFor(
      "the dying instance to wait on the test's lock",
      async () => {
        const rows = await db(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'coordinator' AND wait_event_type = 'Lock'`,
        );
        return rows.length > 0;
      },
      30_000,
      20,
    );
  const count = async (text: string, params: unknown[] = []) => Number((await db(text, params))[0].n);
  const heldAtDaemon = async () => new Money((await pd.daemon.ledgerTotals()).held);

  const post = (url: string, path: string, key: string, apiKey: string, body: unknown) =>
    request(url)
      .post(path)
      .set('X-Api-Key', apiKey)
      .set('Idempotency-Key', key)
      .send(body as object);

  /** A request to the dying instance: its answer never comes. */
  const doomed = (url: string, path: string, key: string, apiKey: string, body: unknown) =>
    post(url, path, key, apiKey, body).then(
      (response) => ({ status: response.status }),
      (error: Error) => ({ error: error.message }),
    );

  /**
   * SIGKILL of the instance held at its kill point; the request it was running never gets
   * an answer. Its connections die with it (a statement it had sent must not run once the
   * test's lock goes), then the lock is let go.
   */
  async function killWhileHeld(a: CoordinatorProcess, inFlight: Promise<unknown>, locker: Client): Promise<void> {
    await a.kill();
    await expect(inFlight).resolves.toEqual({ error: expect.any(String) });
    await db(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = 'coordinator'`,
    );
    await locker.query('ROLLBACK');
  }

  /** The retries on the surviving instance: in progress within the lease, then the answer, then its replay. */
  async function retryOnB(path: string, key: string, apiKey: string, body: unknown): Promise<request.Response> {
    const early = await post(b.url, path, key, apiKey, body);
    expect({ status: early.status, code: early.body.code }).toEqual({ status: 409, code: 'IDEMPOTENCY_IN_PROGRESS' });
    await endLease(key);
    const answer = await post(b.url, path, key, apiKey, body);
    const replay = await post(b.url, path, key, apiKey, body);
    expect({ status: replay.status, replayed: replay.headers['idempotent-replayed'], body: replay.body }).toEqual({
      status: answer.status,
      replayed: 'true',
      body: answer.body,
    });
    return answer;
  }

  /** The answer's fields that an uninterrupted call with the same body gives too (ids and times differ). */
  const comparable = (body: Record<string, unknown>) => {
    const same = Object.fromEntries(Object.entries(body).filter(([name]) => !/(_id|_at|_hash|_address)$/.test(name)));
    return { fields: Object.keys(body).sort(), ...same };
  };

  describe.each<CreatePoint>(['after the claim', 'after the job commit', 'after the daemon hold', 'before the answer'])(
    'paid POST /v1/jobs, killed %s',
    (point) => {
      it('a retry on another instance answers with one job, one payment, one hold: as an uninterrupted call would', async () => {
        const key = `crash-create-${point.replace(/ /g, '-')}`;
        const amount = '0.00123';
        const body = { payload: { job_type: 'ai_inference', parameters: { prompt: point } }, payment_amount: amount };
        const jobsBefore = await count(`SELECT count(*) AS n FROM job`);
        const heldBefore = await heldAtDaemon();
        const a = await spawnCoordinator(t, { ...LONG_LEASE, ...NO_BACKGROUND, WALLET_DAEMON_URL: proxy.url });
        const since = proxy.calls.length;
        const creates = () => proxy.calls.slice(since).filter((call) => call.path === '/api/v1/escrow/create');
        const locker = new Client({ connectionString: t.databaseUrl });
        await locker.connect();
        try {
          if (point === 'after the claim') {
            // The job insert waits for this lock: the claim is committed, nothing else.
            await locker.query('BEGIN');
            await locker.query('LOCK TABLE job IN SHARE MODE');
          }
          // The escrow call never reaches the daemon, or the daemon's answer never comes back.
          if (point === 'after the job commit') proxy.holdRequests((call) => call.path === '/api/v1/escrow/create');
          if (point === 'after the daemon hold' || point === 'before the answer')
            proxy.holdAnswers((call) => call.path === '/api/v1/escrow/create');
          const inFlight = doomed(a.url, '/v1/jobs', key, t.keys.client, body);

          if (point === 'after the claim') {
            await waitFor('the claim', async () => (await keyRow(key)) !== undefined);
            await blockedOnLock();
          } else if (point === 'after the job commit') {
            await waitFor('the job commit', async () => (await keyRow(key))?.recovery?.job_id);
            await waitFor('the escrow call to be on its way', async () => creates().length > 0);
          } else {
            await waitFor('the daemon to hold the escrow', async () =>
              creates().find((call) => call.status !== undefined && call.status < 300),
            );
            if (point === 'before the answer') {
              // The answer is stored under the key last: keep the key's row, let everything else finish.
              await locker.query('BEGIN');
              await locker.query(`SELECT 1 FROM idempotency_keys WHERE key = $1 FOR UPDATE`, [key]);
              proxy.deliverHeld();
              const jobId = (await keyRow(key)).recovery.job_id;
              await waitFor(
                'the escrow to be recorded',
                async () =>
                  (await count(`SELECT count(*) AS n FROM job_payments WHERE job_id = $1 AND status = 'escrowed'`, [
                    jobId,
                  ])) === 1,
              );
              await blockedOnLock();
            }
          }
          await killWhileHeld(a, inFlight, locker);
        } finally {
          await locker.end();
          proxy.holdAnswers(undefined);
          proxy.holdRequests(undefined);
        }
        const committed = await keyRow(key);
        expect(committed.status_code).toBeNull();
        expect(committed.recovery === null).toBe(point === 'after the claim');

        const answer = await retryOnB('/v1/jobs', key, t.keys.client, body);
        const control = await post(b.url, '/v1/jobs', `${key}-uninterrupted`, t.keys.client, body);
        expect(answer.status).toBe(201);
        expect(comparable(answer.body)).toEqual(comparable(control.body));
        expect(answer.body).toMatchObject({
          state: 'queued',
          payment_status: 'escrowed',
          payment_amount: '0.00123000',
        });
        if (committed.recovery) expect(answer.body.job_id).toBe(committed.recovery.job_id);

        // One job and one payment for the key (plus the control's), one hold each at the daemon.
        expect(await count(`SELECT count(*) AS n FROM job`)).toBe(jobsBefore + 2);
        const payments = await db(`SELECT status, escrow_id FROM job_payments WHERE job_id = $1`, [answer.body.job_id]);
        expect(payments.map((p) => p.status)).toEqual(['escrowed']);
        expect(kinds(await pd.daemon.escrowTransfers(payments[0].escrow_id))).toEqual(['create']);
        expect((await heldAtDaemon()).eq(heldBefore.plus(amount).plus(amount))).toBe(true);
      });
    },
  );

  /**
   * A release, as a single call or as a batch of two (docs/money-and-states.md, "Batches": one decision,
   * one daemon settle-batch call, one recording for the whole set).
   */
  describe.each<[ReleasePoint, 'single' | 'batch']>(
    (
      [
        'after the claim',
        'after the decision commit',
        'after the daemon settled',
        'before the answer',
      ] as ReleasePoint[]
    ).flatMap((point) => [
      [point, 'single'],
      [point, 'batch'],
    ]),
  )('release killed %s (%s call)', (point, via) => {
    it('a retry on another instance answers with the payments released once, to the miner', async () => {
      const amount = '0.00231';
      const jobs = [];
      for (let i = 0; i < (via === 'single' ? 1 : 2); i++) {
        const job = await createPaidJob(httpB, t.keys.client, { amount });
        await claimJob(httpB, t.keys.miner, job.job_id);
        jobs.push(job);
      }
      const ids = jobs.map((job) => job.payment_id);
      const path = via === 'single' ? `/v1/payments/${ids[0]}/release` : '/v1/payments/batch';
      const body =
        via === 'single'
          ? { reason: 'work accepted' }
          : { items: ids.map((payment_id) => ({ payment_id, action: 'release', reason: 'work accepted' })) };
      const daemonRoute = via === 'single' ? '/api/v1/escrow/release' : '/api/v1/escrow/settle-batch';
      const key = `crash-release-${via}-${point.replace(/ /g, '-')}`;
      const payoutBefore = new Money(await pd.daemon.balance(payout));
      const a = await spawnCoordinator(t, { ...LONG_LEASE, ...NO_BACKGROUND, WALLET_DAEMON_URL: proxy.url });
      const since = proxy.calls.length;
      const settles = () => proxy.calls.slice(since).filter((call) => call.path === daemonRoute);
      const locker = new Client({ connectionString: t.databaseUrl });
      await locker.connect();
      const statuses = async () =>
        (await db(`SELECT status FROM job_payments WHERE payment_id = ANY($1::uuid[])`, [ids])).map(
          (row) => row.status,
        );
      const all = (status: string) => async () => (await statuses()).every((s) => s === status);
      try {
        if (point === 'after the claim') {
          // The decision locks the jobs first; it waits here with only the claim committed.
          await locker.query('BEGIN');
          await locker.query(`SELECT 1 FROM job WHERE job_id = ANY($1::uuid[]) FOR UPDATE`, [
            jobs.map((job) => job.job_id),
          ]);
        }
        if (point === 'after the decision commit') proxy.holdRequests((call) => call.path === daemonRoute);
        if (point === 'after the daemon settled' || point === 'before the answer')
          proxy.holdAnswers((call) => call.path === daemonRoute);
        const inFlight = doomed(a.url, path, key, t.keys.client, body);

        if (point === 'after the claim') {
          await waitFor('the claim', async () => (await keyRow(key)) !== undefined);
          await blockedOnLock();
        } else if (point === 'after the decision commit') {
          await waitFor('the decision', all('releasing'));
          await waitFor('the settle call to be on its way', async () => settles().length > 0);
        } else {
          await waitFor('the daemon to settle', async () =>
            settles().find((call) => call.status !== undefined && call.status < 300),
          );
          if (point === 'before the answer') {
            await locker.query('BEGIN');
            await locker.query(`SELECT 1 FROM idempotency_keys WHERE key = $1 FOR UPDATE`, [key]);
            proxy.deliverHeld();
            await waitFor('the settlements to be recorded', all('released'));
            await blockedOnLock();
          }
        }
        await killWhileHeld(a, inFlight, locker);
      } finally {
        await locker.end();
        proxy.holdAnswers(undefined);
        proxy.holdRequests(undefined);
      }
      const expected = {
        'after the claim': 'escrowed',
        'after the decision commit': 'releasing',
        'after the daemon settled': 'releasing',
        'before the answer': 'released',
      }[point];
      expect(await statuses()).toEqual(ids.map(() => expected));

      const answer = await retryOnB(path, key, t.keys.client, body);
      expect(answer.status).toBe(200);
      const payments =
        via === 'single'
          ? [answer.body]
          : answer.body.items.map(
              (item: { status_code: number; payment: unknown }) => (expect(item.status_code).toBe(200), item.payment),
            );
      expect(
        payments.map((p: { payment_id: string; status: string; payee_address: string }) => [
          p.payment_id,
          p.status,
          p.payee_address,
        ]),
      ).toEqual(ids.map((id) => [id, 'released', payout]));

      // Released once each: one event, one transfer at the daemon, the miner paid each amount once.
      for (const id of ids) {
        const events = await paymentEvents(httpB, t.keys.client, id);
        expect(events.filter((e: { to: string }) => e.to === 'released')).toHaveLength(1);
        const escrowId = (await db(`SELECT escrow_id FROM job_payments WHERE payment_id = $1`, [id]))[0].escrow_id;
        expect(kinds(await pd.daemon.escrowTransfers(escrowId))).toEqual(['create', 'release']);
      }
      expect(
        new Money(await pd.daemon.balance(payout)).eq(payoutBefore.plus(new Money(amount).times(ids.length))),
      ).toBe(true);
    });
  });

  /**
   * Every other POST route that writes, killed "before the answer": its work committed, the
   * answer not stored. The test forgets the stored answer and ends the lease in the
   * database (what such a crash leaves behind); the retry must resume from the recovery
   * point and answer as the first attempt did, without doing the work a second time.
   */
  describe('every POST route resumes from its recovery point, never repeating its work', () => {
    const forgetAnswer = (key: string) =>
      db(
        `UPDATE idempotency_keys SET status_code = NULL, response_body = NULL, completed_at = NULL, locked_until = now() - interval '1 millisecond' WHERE key = $1`,
        [key],
      );
    const releasedOrRefunded = async (paymentId: string) =>
      (await paymentEvents(t.http, t.keys.client, paymentId)).filter(
        (e: { to: string }) => e.to === 'released' || e.to === 'refunded',
      ).length;

    async function firstThenResumed(who: 'client' | 'miner', path: string, key: string, body: object) {
      const send = () => t.http.post(path).set('X-Api-Key', t.keys[who]).set('Idempotency-Key', key).send(body);
      const first = await send();
      expect((await keyRow(key)).recovery).not.toBeNull();
      await forgetAnswer(key);
      const resumed = await send();
      expect({ status: resumed.status, replayed: resumed.headers['idempotent-replayed'] }).toEqual({
        status: first.status,
        replayed: undefined,
      });
      return { first, resumed };
    }

    it('POST /v1/miners/poll: the job the first attempt claimed, not the next one', async () => {
      await registerMiner(t.http, t.keys.miner2, payout);
      // Nothing else queued: the two jobs below are the only ones a poll can claim.
      while ((await t.http.post('/v1/miners/poll').set('X-Api-Key', t.keys.miner2).send({})).status === 200);
      const one = await createPaidJob(t.http, t.keys.client);
      const two = await createPaidJob(t.http, t.keys.client);
      const { first, resumed } = await firstThenResumed('miner', '/v1/miners/poll', 'resume-poll', {});
      expect(first.body.job_id).toBe(one.job_id);
      expect(resumed.body).toEqual(first.body);
      expect((await db(`SELECT state FROM job WHERE job_id = $1`, [two.job_id]))[0].state).toBe('queued');
    });

    it.each([
      ['/result', { result: { ok: true } }, 'released'],
      ['/fail', { error: 'out of memory' }, 'refunded'],
    ])('POST /v1/miners/jobs/{id}%s: the job as reported, its payment settled once', async (suffix, body, settled) => {
      const job = await createPaidJob(t.http, t.keys.client);
      await claimJob(t.http, t.keys.miner, job.job_id);
      const { first, resumed } = await firstThenResumed(
        'miner',
        `/v1/miners/jobs/${job.job_id}${suffix}`,
        `resume${suffix}`,
        body,
      );
      expect(first.body.payment_status).toBe(settled);
      expect(resumed.body).toEqual(first.body);
      expect(await releasedOrRefunded(job.payment_id)).toBe(1);
    });

    it('POST /v1/jobs/{id}/cancel: the canceled job, refunded once', async () => {
      const job = await createPaidJob(t.http, t.keys.client);
      const { first, resumed } = await firstThenResumed('client', `/v1/jobs/${job.job_id}/cancel`, 'resume-cancel', {});
      expect(first.body).toMatchObject({ state: 'canceled', payment_status: 'refunded' });
      expect(resumed.body).toEqual(first.body);
      expect(await releasedOrRefunded(job.payment_id)).toBe(1);
    });

    it('POST /v1/payments/{id}/refund: the refunded payment, refunded once', async () => {
      const job = await createPaidJob(t.http, t.keys.client);
      const { first, resumed } = await firstThenResumed(
        'client',
        `/v1/payments/${job.payment_id}/refund`,
        'resume-refund',
        { reason: 'no longer needed' },
      );
      expect(first.body.status).toBe('refunded');
      expect(resumed.body).toEqual(first.body);
      expect(await releasedOrRefunded(job.payment_id)).toBe(1);
    });

    it('POST /v1/jobs/batch: the same jobs by position, no second job or hold', async () => {
      const items = [
        { payload: { job_type: 'ai_inference' }, payment_amount: '0.00031' },
        { payload: { job_type: 'ai_inference' }, payment_amount: '-1' },
        { payload: { job_type: 'ai_inference' } },
      ];
      const jobsBefore = await count(`SELECT count(*) AS n FROM job`);
      const { first, resumed } = await firstThenResumed('client', '/v1/jobs/batch', 'resume-job-batch', { items });
      expect(first.body.items.map((i: { status_code: number }) => i.status_code)).toEqual([201, 400, 201]);
      // The same answer; only a refused item's request_id names the request that answered.
      const withoutRequestIds = (body: { items: { error?: { request_id?: string } }[] }) => ({
        ...body,
        items: body.items.map((item) =>
          item.error ? { ...item, error: { ...item.error, request_id: undefined } } : item,
        ),
      });
      expect(withoutRequestIds(resumed.body)).toEqual(withoutRequestIds(first.body));
      expect(await count(`SELECT count(*) AS n FROM job`)).toBe(jobsBefore + 2);
      const [row] = await db(`SELECT escrow_id FROM job_payments WHERE job_id = $1`, [first.body.items[0].job.job_id]);
      expect(kinds(await pd.daemon.escrowTransfers(row.escrow_id))).toEqual(['create']);
    });

    it('POST /v1/payments: the same payment, one row, one hold', async () => {
      const unpaid = await t.http
        .post('/v1/jobs')
        .set('X-Api-Key', t.keys.client)
        .send({ payload: { job_type: 'ai_inference' } });
      expect(unpaid.status).toBe(201);
      const { first, resumed } = await firstThenResumed('client', '/v1/payments', 'resume-payment', {
        job_id: unpaid.body.job_id,
        amount: '0.00042',
      });
      expect(first.body.status).toBe('escrowed');
      expect(resumed.body).toEqual(first.body);
      const rows = await db(`SELECT escrow_id FROM job_payments WHERE job_id = $1`, [unpaid.body.job_id]);
      expect(rows).toHaveLength(1);
      expect(kinds(await pd.daemon.escrowTransfers(rows[0].escrow_id))).toEqual(['create']);
    });
  });

  it('a slow first attempt cannot commit after a retry took its claim over (fencing): one job, the first attempt answers 409', async () => {
    const key = 'crash-fencing';
    const body = { payload: { job_type: 'ai_inference', parameters: { prompt: 'fenced' } }, payment_amount: '0.00077' };
    const jobsBefore = await count(`SELECT count(*) AS n FROM job`);
    const locker = new Client({ connectionString: t.databaseUrl });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE job IN SHARE MODE');
      // The first attempt (the in-process app) is alive but stuck before its first write.
      const firstDone = t.http
        .post('/v1/jobs')
        .set('X-Api-Key', t.keys.client)
        .set('Idempotency-Key', key)
        .send(body)
        .then((r) => r);
      await waitFor('the first claim', async () => (await keyRow(key)) !== undefined);
      await blockedOnLock();
      const firstToken = (await keyRow(key)).claim_token;
      await endLease(key);
      // The retry takes the claim over (a new token) and is stuck behind the same lock.
      const retry = post(b.url, '/v1/jobs', key, t.keys.client, body).then((r) => r);
      await waitFor('the takeover', async () => (await keyRow(key)).claim_token !== firstToken);
      await locker.query('COMMIT');
      const [firstAnswer, retryAnswer] = await Promise.all([firstDone, retry]);
      expect({ first: firstAnswer.status, code: firstAnswer.body.code, retry: retryAnswer.status }).toEqual({
        first: 409,
        code: 'IDEMPOTENCY_IN_PROGRESS',
        retry: 201,
      });
      expect(await count(`SELECT count(*) AS n FROM job`)).toBe(jobsBefore + 1);
      const replay = await post(b.url, '/v1/jobs', key, t.keys.client, body);
      expect({ status: replay.status, job: replay.body.job_id }).toEqual({ status: 201, job: retryAnswer.body.job_id });
    } finally {
      await locker.end();
    }
  });

  it('with a real lease: a retry after the lease has run out takes over on its own (409 IDEMPOTENCY_IN_PROGRESS only until then)', async () => {
    const key = 'crash-real-lease';
    const body = { payload: { job_type: 'ai_inference', parameters: { prompt: 'lease' } }, payment_amount: '0.00055' };
    const a = await spawnCoordinator(t, {
      ...NO_BACKGROUND,
      IDEMPOTENCY_LEASE_MS: '1500',
      WALLET_DAEMON_URL: proxy.url,
    });
    proxy.holdRequests((call) => call.path === '/api/v1/escrow/create');
    const inFlight = doomed(a.url, '/v1/jobs', key, t.keys.client, body);
    await waitFor('the job commit', async () => (await keyRow(key))?.recovery?.job_id);
    await a.kill();
    await expect(inFlight).resolves.toEqual({ error: expect.any(String) });
    proxy.holdRequests(undefined);

    const answers: { status: number; code?: string }[] = [];
    const answer = await waitFor(
      'a retry to be answered',
      async () => {
        const response = await post(b.url, '/v1/jobs', key, t.keys.client, body);
        answers.push({ status: response.status, code: response.body.code });
        return response.status === 201 ? response : undefined;
      },
      30_000,
      100,
    );
    expect(answers.slice(0, -1).every((a) => a.status === 409 && a.code === 'IDEMPOTENCY_IN_PROGRESS')).toBe(true);
    expect(answer.body).toMatchObject({ job_id: (await keyRow(key)).recovery.job_id, payment_status: 'escrowed' });
  });
});
