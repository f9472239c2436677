import { PaymentsService } from '../src/payments/payments.service';
import { spawnWalletDaemon } from '../src/wallet-daemon/spawn';
import type { TestApp } from './support/app';
import { DAEMON_LOG_FILE, PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { metricValue, query, waitFor } from './support/flow';
import { Api, Body, Dec, expectStatus, inBatches, PAYLOAD, sat8, startApp } from './support/payments';
import { portOutsideEphemeralRange } from './support/ports';

jest.setTimeout(180_000);

/**
 * Several wallet daemons ("payment providers", README "Providers and routing"): three
 * local daemon processes of this file alone, each with its own database. Every test
 * checks, at every daemon, that each payment is held at most once and only at the
 * provider its row names, and that every daemon's ledger is conserved.
 */

const PROVIDERS = ['one', 'two', 'three'] as const;
type ProviderId = (typeof PROVIDERS)[number];

/**
 * A seed of its own per daemon, as real providers have: with one shared seed a daemon
 * would derive, as a fresh escrow address, the very address another daemon gave a client
 * wallet that the test funds everywhere.
 */
const SEEDS: Record<ProviderId, string> = {
  one: '000102030405060708090a0b0c0d0e0f',
  two: '101112131415161718191a1b1c1d1e1f',
  three: '202122232425262728292a2b2c2d2e2f',
};

interface Node {
  id: ProviderId;
  priv: PrivateDaemon;
  /** Stops the running process (replaced when the daemon is restarted). */
  stop: () => Promise<void>;
}

const nodes = new Map<ProviderId, Node>();
const node = (id: ProviderId) => nodes.get(id) as Node;

/** PAYMENT_PROVIDERS for the three daemons, with per-provider overrides. */
function providersEnv(overrides: Partial<Record<ProviderId, object>> = {}): string {
  return JSON.stringify(
    PROVIDERS.map((id, index) => ({
      id,
      url: node(id).priv.daemon.endpoint.url,
      token: node(id).priv.daemon.endpoint.token,
      currencies: ['BTC', 'AITBC'],
      priority: index + 1,
      ...overrides[id],
    })),
  );
}

const routedEnv = (env: Record<string, string>) => ({
  SETTLEMENT_LEASE_MS: '100',
  WALLET_DAEMON_RETRIES: '1',
  WALLET_DAEMON_TIMEOUT_MS: '3000',
  // Long enough that a circuit opened by a test stays open through the steps that assert
  // it (a second instance starting, a few requests) on a loaded machine.
  PROVIDER_BREAKER_COOLDOWN_MS: '3000',
  ...env,
});

/** A coordinator routing over the three daemons; both client wallets funded at each of them. */
async function startRoutedApp(env: Record<string, string>): Promise<TestApp> {
  const t = await startApp(routedEnv(env), { daemon: node('one').priv.daemon });
  for (const id of ['two', 'three'] as const)
    for (const wallet of [t.clientWallet, t.client2Wallet]) await node(id).priv.daemon.faucet(wallet, '10', 'BTC');
  return t;
}

/** Where each payment is held, looked up in every daemon's own database (stopped or not). */
async function escrowsAt(paymentIds: string[]): Promise<Map<string, ProviderId[]>> {
  const found = new Map<string, ProviderId[]>(paymentIds.map((id) => [id, []]));
  for (const id of PROVIDERS) {
    const rows = await query<{ payment_id: string }>(
      node(id).priv.databaseUrl,
      `SELECT payment_id FROM wallet_daemon.escrows WHERE payment_id = ANY($1::text[])`,
      [paymentIds],
    );
    for (const row of rows) found.get(row.payment_id)?.push(id);
  }
  return found;
}

/** Each payment is held exactly once (`held`) or nowhere, and only at the provider its row names. */
async function expectHeldOnceAtTheirProviders(api: Api, paymentIds: string[], held = true): Promise<void> {
  const rows = await api.query<{ payment_id: string; provider_id: string }>(
    `SELECT payment_id, provider_id FROM job_payments WHERE payment_id = ANY($1::uuid[])`,
    [paymentIds],
  );
  expect(rows).toHaveLength(paymentIds.length);
  const at = await escrowsAt(paymentIds);
  for (const row of rows)
    expect([row.payment_id, at.get(row.payment_id)]).toEqual([row.payment_id, held ? [row.provider_id] : []]);
}

async function expectEveryLedgerConserved(): Promise<void> {
  for (const id of PROVIDERS) {
    for (const currency of ['BTC', 'AITBC'])
      await node(id)
        .priv.daemon.expectLedgerConserved(currency)
        .catch((error: Error) => {
          throw new Error(`provider ${id}: ${error.message}`);
        });
  }
}

/** Stops a daemon process, keeping its database and port for `restart`. */
async function stopDaemon(id: ProviderId): Promise<void> {
  await node(id).stop();
}

/**
 * A daemon of this file on a database of its own, with its own seed, on a port no other
 * listener is given while it is stopped (a stopped provider must refuse connections).
 */
async function startDaemon(id: ProviderId): Promise<Node> {
  const priv = await startPrivateDaemon({ seed: SEEDS[id], port: await portOutsideEphemeralRange() });
  return { id, priv, stop: () => priv.stop() };
}

/** Starts the daemon again on its database and port (its URL, so the coordinator's configuration still points at it). */
async function restartDaemon(id: ProviderId): Promise<void> {
  const { priv } = node(id);
  const spawned = await spawnWalletDaemon({
    databaseUrl: priv.databaseUrl,
    token: priv.daemon.endpoint.token,
    port: Number(new URL(priv.daemon.endpoint.url).port),
    seed: SEEDS[id],
    env: { LOG_LEVEL: 'error' },
    logFile: DAEMON_LOG_FILE,
  });
  expect(spawned.url).toBe(priv.daemon.endpoint.url);
  node(id).stop = () => spawned.stop();
}

async function providerList(api: Api): Promise<Body[]> {
  return expectStatus(
    await api.t.http.get('/v1/providers').set('X-Api-Key', api.key('admin')),
    200,
    'GET /v1/providers',
  ).items;
}

async function providerView(api: Api, id: string): Promise<Body> {
  return (await providerList(api)).find((p) => p.id === id);
}

function setDraining(api: Api, id: string, draining: boolean) {
  return api.t.http
    .post(`/v1/providers/${id}/${draining ? 'drain' : 'resume'}`)
    .set('X-Api-Key', api.key('admin'))
    .send({});
}

async function providerOf(api: Api, paymentId: string): Promise<string> {
  return (await api.payment(paymentId)).provider_id as string;
}

beforeAll(async () => {
  for (const id of PROVIDERS) nodes.set(id, await startDaemon(id));
});

afterAll(async () => {
  for (const n of nodes.values()) await n.stop();
});

describe('priority routing, failover, drain (e2e)', () => {
  let t: TestApp;
  let api: Api;
  let env: Record<string, string>;
  /** An AITBC wallet of client-1's, funded at every daemon. */
  let aitbcPayer: string;

  beforeAll(async () => {
    env = { PAYMENT_PROVIDERS: providersEnv(), PAYMENT_ROUTING: 'priority' };
    t = await startRoutedApp(env);
    api = new Api(t);
    aitbcPayer = await node('one').priv.daemon.newAddress('AITBC');
    for (const id of PROVIDERS) await node(id).priv.daemon.faucet(aitbcPayer, '100', 'AITBC');
  });
  afterAll(async () => {
    await t?.close();
  });
  afterEach(async () => {
    for (const id of PROVIDERS)
      await node(id)
        .priv.daemon.resetFaults()
        .catch(() => undefined);
    await api.cancelLiveJobs();
    await expectEveryLedgerConserved();
  });

  it('new escrows go to the first provider by priority; provider_id is recorded and shown, GET /v1/providers lists each', async () => {
    const jobs = [
      await api.paidJob(),
      await api.paidJob('client2', { payment_amount: '0.002' }),
      await api.paidJob('client', { payment_currency: 'AITBC', payment_amount: '1.5', payer_address: aitbcPayer }),
    ];
    for (const job of jobs) {
      expect(job.payment_status).toBe('escrowed');
      expect(await providerOf(api, job.payment_id)).toBe('one');
    }
    await expectHeldOnceAtTheirProviders(
      api,
      jobs.map((j) => j.payment_id),
    );
    const listed = expectStatus(
      await t.http.get(`/v1/payments?job_id=${jobs[0].job_id}`).set('X-Api-Key', api.key('admin')),
      200,
      'GET /v1/payments',
    );
    expect(listed.items[0].provider_id).toBe('one');

    const providers = await providerList(api);
    expect(providers.map((p) => p.id)).toEqual(['one', 'two', 'three']);
    expect(providers[0]).toEqual({
      id: 'one',
      currencies: ['BTC', 'AITBC'],
      priority: 1,
      weight: 1,
      max_amount: {},
      state: 'closed',
      draining: false,
      calls: expect.stringMatching(/^\d+$/),
      failures: '0',
      held: { BTC: '0.00300000', AITBC: '1.50000000' },
    });
    expect(Number(providers[0].calls)).toBeGreaterThanOrEqual(3);
    expect(providers[1]).toMatchObject({ state: 'closed', held: { BTC: '0.00000000', AITBC: '0.00000000' } });
    expect(
      expectStatus(await t.http.get('/v1/providers').set('X-Api-Key', api.key('client')), 403, 'client'),
    ).toMatchObject({ code: 'FORBIDDEN' });
  });

  it('a stopped provider: new escrows fail over to the next (never held twice), its circuit opens, and its payments settle once it is back', async () => {
    await api.registerFreshMiner('miner');
    const running = await api.paidJob();
    const refundLater = await api.paidJob();
    await api.pollFor(running.job_id);
    expect(await providerOf(api, running.payment_id)).toBe('one');

    await stopDaemon('one');
    const failedOver: Body[] = [];
    for (let i = 0; i < 8; i++) failedOver.push(await api.paidJob());
    for (const job of failedOver) {
      expect(job.payment_status).toBe('escrowed');
      expect(await providerOf(api, job.payment_id)).toBe('two');
    }
    let all = [running, refundLater, ...failedOver].map((j) => j.payment_id);
    await expectHeldOnceAtTheirProviders(api, all);

    // Each of the first five reached no daemon at `one` (connection refused) and moved on;
    // the fifth failure opened the circuit, so the last three went to `two` directly.
    const moves = await api.query<{ payment_id: string; details: Record<string, string> }>(
      `SELECT payment_id, details FROM payment_events WHERE reason = 'provider_failover' AND payment_id = ANY($1::uuid[]) ORDER BY event_id`,
      [all],
    );
    expect(moves.map((m) => m.payment_id)).toEqual(failedOver.slice(0, 5).map((j) => j.payment_id));
    expect(moves[0].details).toMatchObject({ from_provider: 'one', to_provider: 'two' });
    expect(await metricValue(t.http, 'payment_provider_failovers_total', { from: 'one', to: 'two' })).toBe(5);
    expect(await providerView(api, 'one')).toMatchObject({ state: 'open', failures: '5' });
    expect(await metricValue(t.http, 'payment_provider_circuit_state', { provider: 'one' })).toBe(2);

    // AITBC goes the same way.
    const aitbc = await api.paidJob('client', {
      payment_currency: 'AITBC',
      payment_amount: '2',
      payer_address: aitbcPayer,
    });
    expect(aitbc.payment_status).toBe('escrowed');
    expect(await providerOf(api, aitbc.payment_id)).toBe('two');
    failedOver.push(aitbc);

    // The circuit is shared: a second instance reads it at start and never calls `one` either.
    const second = await startApp(routedEnv(env), { sameAs: t });
    try {
      const other = new Api(second);
      expect(await providerView(other, 'one')).toMatchObject({ state: 'open' });
      const routed = await other.paidJob();
      expect(routed.payment_status).toBe('escrowed');
      expect(await providerOf(other, routed.payment_id)).toBe('two');
      expect(await metricValue(second.http, 'payment_provider_calls_total', { provider: 'one' })).toBe(0);
      failedOver.push(routed);
    } finally {
      await second.close();
    }

    // The miner finishes while `one` is down: the release is decided, and waits (nothing sent: the circuit is open).
    expectStatus(await api.result('miner', running.job_id), 200, 'result');
    expect((await api.payment(running.payment_id)).status).toBe('releasing');
    expectStatus(await api.cancel('client', refundLater.job_id), 200, 'cancel');
    expect((await api.payment(refundLater.payment_id)).status).toBe('refunding');

    // Still down after the cooldown: the half-open probe (the re-drive's settle-batch) fails, and the circuit opens again.
    await waitFor(
      'the circuit of one to be half-open',
      async () => (await providerView(api, 'one')).state === 'half_open',
    );
    const reopened = await waitFor(
      'the failed probe to reopen the circuit',
      async () => {
        await t.app.get(PaymentsService).redriveDue();
        const view = await providerView(api, 'one');
        return view.failures === '6' && view;
      },
      20_000,
    );
    expect(reopened.state).toBe('open');
    expect((await api.payment(running.payment_id)).status).toBe('releasing');

    await restartDaemon('one');
    // After the cooldown one probe goes through, succeeds, and closes the circuit.
    const released = await api.redriveUntil(running.payment_id, 'released', 20_000);
    expect(released.provider_id).toBe('one');
    await api.redriveUntil(refundLater.payment_id, 'refunded', 20_000);
    expect(await providerView(api, 'one')).toMatchObject({ state: 'closed' });
    const escrow = await node('one').priv.daemon.escrowTransfers(released.escrow_id);
    expect(escrow.map((e) => e.kind).sort()).toEqual(['create', 'release']);

    all = [running, refundLater, ...failedOver].map((j) => j.payment_id);
    await expectHeldOnceAtTheirProviders(api, all);

    // Payments held at `two` settle there.
    expectStatus(await api.cancel('client', failedOver[0].job_id), 200, 'cancel');
    expect((await api.payment(failedOver[0].payment_id)).status).toBe('refunded');
    await expectHeldOnceAtTheirProviders(api, all);

    // With `one` healthy again, new escrows go back to it.
    expect(await providerOf(api, (await api.paidJob()).payment_id)).toBe('one');
  });

  // An ambiguous failure never moves a payment: the daemon may have applied the create.
  it.each([
    ['applies the create, then drops the connection', { drop_rate: 1 }, 'held'],
    ['answers 503', { fail_rate: 1 }, 'not held'],
    ['answers after the call timed out (and applies it)', { latency_ms: 3500 }, 'unknown'],
  ] as const)(
    'a provider that %s: the payment stays with it, no hold anywhere else, the re-drive completes it there with the same key',
    async (_name, faults, atOne) => {
      await node('one').priv.daemon.setFaults(faults);
      const job = await api.paidJob();
      expect(job.payment_status).toBe('pending');
      expect(await providerOf(api, job.payment_id)).toBe('one');
      const now = (await escrowsAt([job.payment_id])).get(job.payment_id);
      if (atOne === 'held') expect(now).toEqual(['one']);
      if (atOne === 'not held') expect(now).toEqual([]);
      expect(now?.filter((id) => id !== 'one')).toEqual([]);

      await node('one').priv.daemon.resetFaults();
      const escrowed = await api.redriveUntil(job.payment_id, 'escrowed', 20_000);
      expect(escrowed.provider_id).toBe('one');
      await expectHeldOnceAtTheirProviders(api, [job.payment_id]);
      const [row] = await query<{ escrow_id: string }>(
        node('one').priv.databaseUrl,
        `SELECT escrow_id FROM wallet_daemon.escrows WHERE payment_id = $1`,
        [job.payment_id],
      );
      expect(escrowed.escrow_id).toBe(row.escrow_id);
      const reasons = await api.query<{ n: string }>(
        `SELECT count(*) AS n FROM payment_events WHERE payment_id = $1 AND reason = 'provider_failover'`,
        [job.payment_id],
      );
      expect(reasons[0].n).toBe('0');
    },
  );

  it('drain and resume: a draining provider takes no new escrows and settles the ones it holds; all draining → 503 NO_PROVIDER_AVAILABLE, nothing created', async () => {
    await api.registerFreshMiner('miner');
    const heldAtOne = await api.paidJob();
    expect(await providerOf(api, heldAtOne.payment_id)).toBe('one');

    const drained = expectStatus(await setDraining(api, 'one', true), 200, 'drain');
    expect(drained).toMatchObject({ id: 'one', draining: true, state: 'closed' });
    expect(new Dec(drained.held.BTC).gte('0.001')).toBe(true);
    const elsewhere = await api.paidJob();
    expect(await providerOf(api, elsewhere.payment_id)).toBe('two');
    // What `one` holds settles there.
    await api.pollFor(heldAtOne.job_id);
    expectStatus(await api.result('miner', heldAtOne.job_id), 200, 'result');
    expect(await api.payment(heldAtOne.payment_id)).toMatchObject({ status: 'released', provider_id: 'one' });

    expect(expectStatus(await setDraining(api, 'one', false), 200, 'resume')).toMatchObject({ draining: false });
    expect(await providerOf(api, (await api.paidJob()).payment_id)).toBe('one');

    for (const id of PROVIDERS) expectStatus(await setDraining(api, id, true), 200, `drain ${id}`);
    const [{ n: jobsBefore }] = await api.query<{ n: string }>(`SELECT count(*) AS n FROM job`);
    const refused = await api.postJob('client', { payload: PAYLOAD, payment_amount: '0.001' });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({
      status_code: 503,
      code: 'NO_PROVIDER_AVAILABLE',
      details: { currency: 'BTC' },
    });
    const batch = expectStatus(
      await t.http
        .post('/v1/jobs/batch')
        .set('X-Api-Key', api.key('client'))
        .send({ items: [{ payload: PAYLOAD, payment_amount: '0.001' }, { payload: PAYLOAD }] }),
      200,
      'batch',
    );
    expect(batch.items.map((i: Body) => [i.status_code, i.error?.code])).toEqual([
      [503, 'NO_PROVIDER_AVAILABLE'],
      [201, undefined],
    ]);
    const [{ n: jobsAfter }] = await api.query<{ n: string }>(`SELECT count(*) AS n FROM job`);
    expect(Number(jobsAfter) - Number(jobsBefore)).toBe(1); // only the unpaid job

    for (const id of PROVIDERS) expectStatus(await setDraining(api, id, false), 200, `resume ${id}`);
    expect((await api.paidJob()).payment_status).toBe('escrowed');

    const unknown = await setDraining(api, 'nowhere', true);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'PROVIDER_NOT_FOUND' });
  });
});

describe('volume split (e2e)', () => {
  let t: TestApp;
  let api: Api;

  beforeAll(async () => {
    t = await startRoutedApp({
      PAYMENT_PROVIDERS: providersEnv({ one: { weight: 5 }, two: { weight: 3 }, three: { weight: 2 } }),
      PAYMENT_ROUTING: 'volume_split',
    });
    api = new Api(t);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('1,000 payments split by weight (5:3:2) within ±5 %, each held once at its provider, every ledger conserved', async () => {
    const created = await inBatches(
      Array.from({ length: 10 }, (_, i) => i),
      2,
      async () =>
        expectStatus(
          await t.http
            .post('/v1/jobs/batch')
            .set('X-Api-Key', api.key('client'))
            .send({ items: Array.from({ length: 100 }, () => ({ payload: PAYLOAD, payment_amount: '0.0001' })) }),
          200,
          'batch',
        ).items as Body[],
    );
    const jobs = created.flat();
    expect(jobs).toHaveLength(1000);
    expect(jobs.every((i) => i.status_code === 201 && i.job.payment_status === 'escrowed')).toBe(true);

    const counts = await api.query<{ provider_id: string; n: string; held: string }>(
      `SELECT provider_id, count(*) AS n, sum(amount)::text AS held FROM job_payments GROUP BY provider_id ORDER BY provider_id`,
    );
    const share = Object.fromEntries(counts.map((c) => [c.provider_id, Number(c.n)]));
    for (const [id, expected] of [
      ['one', 500],
      ['two', 300],
      ['three', 200],
    ] as const) {
      expect(Math.abs(share[id] - expected)).toBeLessThanOrEqual(expected * 0.05);
    }
    await expectHeldOnceAtTheirProviders(
      api,
      jobs.map((i) => i.job.payment_id),
    );
    for (const provider of await providerList(api)) {
      const row = counts.find((c) => c.provider_id === provider.id);
      expect(provider.held.BTC).toBe(sat8(row?.held ?? '0'));
    }
    await expectEveryLedgerConserved();
  });
});

describe('routing rules by currency, amount and client (e2e)', () => {
  let t: TestApp;
  let api: Api;
  let aitbcPayer: string;

  beforeAll(async () => {
    t = await startRoutedApp({
      PAYMENT_PROVIDERS: providersEnv({ one: { max_amount: { BTC: '0.5' } } }),
      PAYMENT_ROUTING: JSON.stringify({
        rules: [
          { when: { currency: 'AITBC' }, use: ['three'] },
          { when: { client_id: 'client-2' }, use: ['two'] },
          { when: { currency: 'BTC', amount_gte: '2' }, use: ['three', 'two'] },
        ],
        default: 'priority',
      }),
    });
    api = new Api(t);
    aitbcPayer = await node('three').priv.daemon.fundedAddress('100', 'AITBC');
  });
  afterAll(async () => {
    await t?.close();
  });
  afterEach(async () => {
    await api.cancelLiveJobs();
    await expectEveryLedgerConserved();
  });

  it.each([
    ['a small BTC payment: the default (priority) → one', 'client', { payment_amount: '0.001' }, 'one'],
    ["exactly one's max_amount (exact compare) → one", 'client', { payment_amount: '0.5' }, 'one'],
    ["one satoshi over one's max_amount → the next by priority", 'client', { payment_amount: '0.50000001' }, 'two'],
    ['BTC ≥ 2 → the rule (three first)', 'client', { payment_amount: '2' }, 'three'],
    ['client-2 → its rule', 'client2', { payment_amount: '0.001' }, 'two'],
  ] as const)('%s', async (_name, who, payment, provider) => {
    const job = await api.paidJob(who, payment);
    expect(job.payment_status).toBe('escrowed');
    expect(await providerOf(api, job.payment_id)).toBe(provider);
    await expectHeldOnceAtTheirProviders(api, [job.payment_id]);
  });

  it("the currency's own thresholds come first: outside CURRENCIES' min/max is 400 INVALID_AMOUNT, never routed", async () => {
    for (const amount of ['1000.00000001', '0.00000545']) {
      const response = await api.postJob('client', { payload: PAYLOAD, payment_amount: amount });
      expect(response.status).toBe(400);
      expect(response.body.code).toBe('INVALID_AMOUNT');
    }
  });

  it('AITBC → three; with three draining the rule has no fallback: 503, while BTC ≥ 2 takes the rule’s second', async () => {
    const job = await api.paidJob('client', {
      payment_currency: 'AITBC',
      payment_amount: '5',
      payer_address: aitbcPayer,
    });
    expect(job.payment_status).toBe('escrowed');
    expect(await providerOf(api, job.payment_id)).toBe('three');
    await expectHeldOnceAtTheirProviders(api, [job.payment_id]);
    expect((await providerView(api, 'three')).held.AITBC).toBe('5.00000000');

    expectStatus(await setDraining(api, 'three', true), 200, 'drain');
    const refused = await api.postJob('client', {
      payload: PAYLOAD,
      payment_currency: 'AITBC',
      payment_amount: '5',
      payer_address: aitbcPayer,
    });
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe('NO_PROVIDER_AVAILABLE');
    const big = await api.paidJob('client', { payment_amount: '2' });
    expect(await providerOf(api, big.payment_id)).toBe('two');
    expectStatus(await setDraining(api, 'three', false), 200, 'resume');

    expectStatus(await api.cancel('client', job.job_id), 200, 'cancel');
    expect(await api.payment(job.payment_id)).toMatchObject({ status: 'refunded', provider_id: 'three' });
    expect(await node('three').priv.daemon.balance(aitbcPayer, 'AITBC')).toBe('100.00000000');
  });
});
