import { randomUUID } from 'node:crypto';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Decimal from 'decimal.js';
import { Client } from 'pg';
import type { AppConfig } from '../src/config/app-config';
import { APP_CONFIG } from '../src/config/config.module';
import { EscrowService } from '../src/escrow/escrow.service';
import { Transactions } from '../src/database/transactions';
import { MetricsService } from '../src/metrics/metrics.service';
import type { JobPayment } from '../src/payments/job-payment.entity';
import { PaymentProviders } from '../src/providers/payment-providers.service';
import { parseProviders } from '../src/providers/provider-config';
import { ProviderStateRepository } from '../src/providers/provider-state.repository';
import { WalletDaemonRejected } from '../src/wallet-daemon-client/wallet-daemon.client';
import { startTestApp, TestApp } from './support/app';
import { PrivateDaemon, startPrivateDaemon } from './support/daemon';
import { mapConcurrent, query, waitFor } from './support/flow';

// POST /api/v1/escrow/create-batch of the local wallet daemon, over HTTP, and the
// coordinator's EscrowService.holdBatch on top of it. A daemon of this file alone, so
// its ledger totals and rows change only with what these tests do.

interface Answer {
  status: number;
  // Bodies are checked field by field below.
  body: any;
  replayed: boolean;
}

interface CreateBody {
  payment_id: string;
  amount: string;
  currency: string;
  payer: string;
  timeout_seconds: number;
}

describe('wallet daemon create-batch', () => {
  let own: PrivateDaemon;

  beforeAll(async () => {
    own = await startPrivateDaemon();
  });

  afterAll(async () => {
    await own?.stop();
  });

  afterEach(async () => {
    await own.daemon.expectLedgerConserved('BTC');
    await own.daemon.expectLedgerConserved('AITBC');
    // Nothing held for a refused item: no hold account without its escrow.
    expect(
      await daemonRows(`SELECT a.address FROM wallet_daemon.accounts a
                             WHERE a.kind = 'escrow' AND NOT EXISTS (SELECT 1 FROM wallet_daemon.escrows e WHERE e.currency = a.currency AND e.address = a.address)`),
    ).toEqual([]);
  });

  const daemonRows = (text: string, params: unknown[] = []) => query(own.databaseUrl, text, params);
  const escrowsOf = async (paymentIds: string[]) =>
    (
      await daemonRows(`SELECT payment_id FROM wallet_daemon.escrows WHERE payment_id = ANY($1::text[])`, [paymentIds])
    ).map((r) => r.payment_id);

  async function post(path: string, body: unknown, key?: string): Promise<Answer> {
    const response = await fetch(`${own.daemon.endpoint.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${own.daemon.endpoint.token}`,
        'content-type': 'application/json',
        ...(key ? { 'idempotency-key': key } : {}),
      },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      body: await response.json(),
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  }

  const createBatch = (items: unknown[]) => post('/api/v1/escrow/create-batch', { items });
  const createSingle = (body: CreateBody, key: string) => post('/api/v1/escrow/create', body, key);
  const createBody = (payer: string, amount: string, currency = 'BTC'): CreateBody => ({
    payment_id: randomUUID(),
    amount,
    currency,
    payer,
    timeout_seconds: 3600,
  });
  const item = (body: CreateBody, key = `${body.payment_id}:create`) => ({ idempotency_key: key, ...body });
  const held = async (currency = 'BTC') => new Decimal((await own.daemon.ledgerTotals(currency)).held);

  it('holds the valid items of a mixed batch and answers the others as their single calls would, holding nothing for them', async () => {
    const payer = await own.daemon.fundedAddress('1');
    const aitbcPayer = await own.daemon.fundedAddress('1', 'AITBC');
    const unfunded = await own.daemon.newAddress();
    const heldBefore = await held();
    const bodies = [
      createBody(payer, '0.3'),
      createBody(payer, '0.8'), // 0.7 left after the item before it
      createBody(payer, '0.5'),
      createBody(unfunded, '0.1'),
      { ...createBody(payer, '0.1'), amount: 'lots' },
      createBody(aitbcPayer, '0.2', 'AITBC'),
    ];
    const { status, body } = await createBatch(bodies.map((b) => item(b)));

    expect(status).toBe(200);
    expect(
      body.results.map((r: any) => [r.idempotency_key, r.status, r.body.code ?? r.body.state, r.replayed]),
    ).toEqual([
      [`${bodies[0].payment_id}:create`, 201, 'held', false],
      [`${bodies[1].payment_id}:create`, 402, 'INSUFFICIENT_FUNDS', false],
      [`${bodies[2].payment_id}:create`, 201, 'held', false],
      [`${bodies[3].payment_id}:create`, 402, 'INSUFFICIENT_FUNDS', false],
      [`${bodies[4].payment_id}:create`, 400, 'INVALID_REQUEST', false],
      [`${bodies[5].payment_id}:create`, 201, 'held', false],
    ]);
    for (const i of [0, 2, 5]) {
      const answer = body.results[i].body;
      expect(answer).toMatchObject({
        payment_id: bodies[i].payment_id,
        amount: new Decimal(bodies[i].amount).toFixed(8),
        currency: bodies[i].currency,
      });
      const transfers = await own.daemon.escrowTransfers(answer.escrow_id);
      expect(transfers).toEqual([
        expect.objectContaining({
          kind: 'create',
          transaction_hash: answer.transaction_hash,
          from: bodies[i].payer,
          to: answer.address,
        }),
      ]);
      expect(await own.daemon.balance(answer.address, bodies[i].currency)).toBe(answer.amount);
    }
    expect(await own.daemon.balance(payer)).toBe('0.20000000');
    expect(await own.daemon.balance(aitbcPayer, 'AITBC')).toBe('0.80000000');
    expect((await held()).minus(heldBefore).toFixed(8)).toBe('0.80000000');
    expect((await escrowsOf(bodies.map((b) => b.payment_id))).sort()).toEqual(
      [bodies[0], bodies[2], bodies[5]].map((b) => b.payment_id).sort(),
    );

    // A refused item's key was given back: once the payer can pay, the same item is held.
    await own.daemon.faucet(payer, '0.6');
    const { body: retried } = await createBatch([item(bodies[1])]);
    expect(retried.results[0]).toMatchObject({
      status: 201,
      replayed: false,
      body: { payment_id: bodies[1].payment_id, state: 'held' },
    });
  });

  it('is the very same create as the single call with that key: either way replays the other, one hold', async () => {
    const payer = await own.daemon.fundedAddress('1');
    const [singleFirst, batchFirst] = [createBody(payer, '0.1'), createBody(payer, '0.2')];

    const single = await createSingle(singleFirst, `${singleFirst.payment_id}:create`);
    expect(single.status).toBe(201);
    const { body } = await createBatch([item(singleFirst), item(batchFirst)]);
    expect(body.results[0]).toEqual({
      idempotency_key: `${singleFirst.payment_id}:create`,
      status: 201,
      body: single.body,
      replayed: true,
    });
    expect(body.results[1]).toMatchObject({ status: 201, replayed: false });

    const replay = await createSingle(batchFirst, `${batchFirst.payment_id}:create`);
    expect(replay).toEqual({ status: 201, body: body.results[1].body, replayed: true });

    expect(await own.daemon.escrowTransfers(single.body.escrow_id)).toHaveLength(1);
    expect(await own.daemon.escrowTransfers(replay.body.escrow_id)).toHaveLength(1);
    expect(await escrowsOf([singleFirst.payment_id, batchFirst.payment_id])).toHaveLength(2);
    expect(await own.daemon.balance(payer)).toBe('0.70000000');
  });

  it('answers a key reused with a different body as the single call does, and holds nothing for it', async () => {
    const payer = await own.daemon.fundedAddress('1');
    const [first, other] = [createBody(payer, '0.1'), createBody(payer, '0.1')];
    const key = `${first.payment_id}:create`;
    expect((await createSingle(first, key)).status).toBe(201);

    const changed = { ...first, amount: '0.2' };
    const { body } = await createBatch([item(changed, key), item(other)]);
    const single = await createSingle(changed, key);
    expect(single.status).toBe(409);
    expect(single.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(body.results[0]).toEqual({
      idempotency_key: key,
      status: single.status,
      body: single.body,
      replayed: false,
    });
    expect(body.results[1]).toMatchObject({ status: 201 });
    expect(await own.daemon.balance(payer)).toBe('0.80000000');

    // And the other way: a key a batch used, sent by a single call with another body.
    const { body: batched } = await createBatch([item(createBody(payer, '0.05'), `batch-${randomUUID()}`)]);
    const reused = await createSingle(createBody(payer, '0.05'), batched.results[0].idempotency_key);
    expect(reused.status).toBe(409);
    expect(reused.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await own.daemon.balance(payer)).toBe('0.75000000');
  });

  it('answers a batch repeating a key or a payment as the single calls one after another would', async () => {
    const payer = await own.daemon.fundedAddress('0.5');
    const [repeatedKey, repeatedPayment] = [createBody(payer, '0.2'), createBody(payer, '0.2')];
    const { body } = await createBatch([
      item(repeatedKey),
      item(repeatedKey),
      item(repeatedPayment),
      item(repeatedPayment, `${repeatedPayment.payment_id}:again`),
    ]);
    expect(body.results.map((r: any) => [r.status, r.replayed, r.body.code ?? r.body.state])).toEqual([
      [201, false, 'held'],
      [201, true, 'held'],
      [201, false, 'held'],
      [402, false, 'INSUFFICIENT_FUNDS'],
    ]);
    expect(body.results[1].body).toEqual(body.results[0].body);
    expect(await own.daemon.balance(payer)).toBe('0.10000000');
    expect(await escrowsOf([repeatedKey.payment_id, repeatedPayment.payment_id])).toHaveLength(2);
  });

  it('holds once per key when batches with the same keys race, in different orders', async () => {
    const payer = await own.daemon.fundedAddress('1');
    const bodies = Array.from({ length: 20 }, () => createBody(payer, '0.01'));
    const orders = [
      bodies,
      [...bodies].reverse(),
      [...bodies.slice(10), ...bodies.slice(0, 10)],
      bodies.filter((_, i) => i % 2 === 0),
    ];
    const answers = (await Promise.all(orders.map((order) => createBatch(order.map((b) => item(b)))))).flatMap(
      ({ status, body }) => {
        expect(status).toBe(200);
        return body.results;
      },
    );

    for (const b of bodies) {
      const mine = answers.filter((a) => a.idempotency_key === `${b.payment_id}:create`);
      expect(mine.every((a) => a.status === 201)).toBe(true);
      expect(mine.filter((a) => !a.replayed)).toHaveLength(1);
      expect(new Set(mine.map((a) => `${a.body.escrow_id} ${a.body.transaction_hash}`)).size).toBe(1);
    }
    expect(await escrowsOf(bodies.map((b) => b.payment_id))).toHaveLength(20);
    expect(await own.daemon.balance(payer)).toBe('0.80000000');
  });

  it('holds 500 items of one payer in one call, in request order until its money runs out, each at its own HD address', async () => {
    const payer = await own.daemon.fundedAddress('0.499');
    const heldBefore = await held();
    const bodies = Array.from({ length: 500 }, () => createBody(payer, '0.001'));
    const { status, body } = await createBatch(bodies.map((b) => item(b)));

    expect(status).toBe(200);
    expect(
      body.results
        .slice(0, 499)
        .every((r: any, i: number) => r.status === 201 && r.body.payment_id === bodies[i].payment_id),
    ).toBe(true);
    expect(body.results[499]).toMatchObject({ status: 402, body: { code: 'INSUFFICIENT_FUNDS' } });
    const addresses = new Set(body.results.slice(0, 499).map((r: any) => r.body.address));
    expect(addresses.size).toBe(499);
    expect([...addresses].every((a) => /^bcrt1q/.test(a as string))).toBe(true);
    // The next derived address continues the chain after them.
    expect(addresses.has(await own.daemon.newAddress())).toBe(false);
    expect(await own.daemon.balance(payer)).toBe('0.00000000');
    expect((await held()).minus(heldBefore).toFixed(8)).toBe('0.49900000');
    expect(await escrowsOf([bodies[499].payment_id])).toEqual([]);
  });

  it('never overdraws a payer that batches and single creates draw on at once', async () => {
    const payer = await own.daemon.fundedAddress('1');
    const heldBefore = await held();
    // 190 creates of 0.01 against 1: exactly 100 can be held, whoever gets there first. The
    // batches alone ask for more than there is, so one that read the balance before
    // another's debit finds less once it has locked the payer.
    const batches = Array.from({ length: 6 }, () => Array.from({ length: 25 }, () => createBody(payer, '0.01')));
    const singles = Array.from({ length: 40 }, () => createBody(payer, '0.01'));
    const [batchAnswers, singleAnswers] = await Promise.all([
      Promise.all(batches.map((bodies) => createBatch(bodies.map((b) => item(b))))),
      mapConcurrent(singles, 8, (b) => createSingle(b, `${b.payment_id}:create`)),
    ]);
    const statuses = [
      ...batchAnswers.flatMap(({ body }) => body.results.map((r: any) => r.status)),
      ...singleAnswers.map((a) => a.status),
    ];

    expect(statuses.filter((s) => s !== 201 && s !== 402)).toEqual([]);
    expect(statuses.filter((s) => s === 201)).toHaveLength(100);
    expect(await own.daemon.balance(payer)).toBe('0.00000000');
    expect((await held()).minus(heldBefore).toFixed(8)).toBe('1.00000000');
    expect(await escrowsOf([...batches.flat(), ...singles].map((b) => b.payment_id))).toHaveLength(100);
  });

  it('gives back the key of an item found short once its payer is locked, although its answer was stored before', async () => {
    const payer = await own.daemon.fundedAddress('0.3');
    const [first, second] = [createBody(payer, '0.2'), createBody(payer, '0.1')];
    const single = createBody(payer, '0.15');
    const lockWaits = async () =>
      Number(
        (
          await daemonRows(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          )
        )[0].n,
      );
    // An open transaction holds the payer's row: a single create of 0.15 queues on it,
    // then the batch, which read 0.3 unlocked (enough for both items), wrote its escrows
    // and stored both answers, queues behind the single create. Released, the single
    // create debits first, and the batch, once it has the payer, finds 0.15.
    const holder = new Client({ connectionString: own.databaseUrl });
    await holder.connect();
    let singleAnswer: Promise<Answer> | undefined;
    let batchAnswer: Promise<Answer> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM wallet_daemon.accounts WHERE address = $1 FOR UPDATE`, [payer]);
      singleAnswer = createSingle(single, `${single.payment_id}:create`);
      await waitFor('the single create to wait on the payer', async () => (await lockWaits()) >= 1);
      batchAnswer = createBatch([item(first), item(second)]);
      await waitFor('the batch to wait on the payer', async () => (await lockWaits()) >= 2);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect((await singleAnswer)?.status).toBe(201);
    const { body } = await batchAnswer;
    expect(body.results[0]).toMatchObject({ status: 402, body: { code: 'INSUFFICIENT_FUNDS' }, replayed: false });
    expect(body.results[1]).toMatchObject({ status: 201, replayed: false, body: { payment_id: second.payment_id } });
    expect(await escrowsOf([first.payment_id])).toEqual([]);
    expect(
      await daemonRows(`SELECT idempotency_key FROM wallet_daemon.idempotency_keys WHERE idempotency_key = $1`, [
        `${first.payment_id}:create`,
      ]),
    ).toEqual([]);
    expect(await own.daemon.balance(payer)).toBe('0.05000000');

    // The same item once the payer can pay: held now, not a replay of the answer stored before the lock.
    await own.daemon.faucet(payer, '0.15');
    const { body: retried } = await createBatch([item(first)]);
    expect(retried.results[0]).toMatchObject({
      status: 201,
      replayed: false,
      body: { payment_id: first.payment_id, state: 'held' },
    });
    expect(await own.daemon.balance(payer)).toBe('0.00000000');
  });

  // Each malformed batch also carries a valid create, which must not be held.
  it.each<[string, (valid: object) => unknown]>([
    ['no items list', (valid) => ({ item: valid })],
    ['items that are not a list', (valid) => ({ items: { 0: valid } })],
    ['no items', () => ({ items: [] })],
    ['more than 500 items', (valid) => ({ items: [valid, ...Array.from({ length: 500 }, () => valid)] })],
    ['an item without a key', (valid) => ({ items: [valid, { ...valid, idempotency_key: undefined }] })],
    ['an item that is not an object', (valid) => ({ items: [valid, 'create'] })],
    ['an over-long key', (valid) => ({ items: [valid, { ...valid, idempotency_key: 'k'.repeat(256) }] })],
  ])('answers 400 to a batch with %s, and holds nothing', async (_name, batch) => {
    const payer = await own.daemon.fundedAddress('1');
    const valid = createBody(payer, '0.1');
    const { status, body } = await post('/api/v1/escrow/create-batch', batch(item(valid)));
    expect(status).toBe(400);
    expect(body.code).toBe('INVALID_REQUEST');
    expect(await own.daemon.balance(payer)).toBe('1.00000000');
    expect(await escrowsOf([valid.payment_id])).toEqual([]);
  });

  describe('EscrowService.holdBatch', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await startTestApp({}, { daemon: own.daemon });
    });

    afterAll(async () => {
      await t?.close();
    });

    const payment = (payer: string, amount: string) =>
      ({
        payment_id: randomUUID(),
        amount,
        currency: 'BTC',
        payer_address: payer,
        escrow_timeout_seconds: 600,
        provider_id: 'local',
      }) as unknown as JobPayment;

    it('holds each payment with its <payment_id>:create key, answering per payment; a repeat or the single hold gets the same holds', async () => {
      const escrow = t.app.get(EscrowService);
      const unfunded = await own.daemon.newAddress();
      const payments = [
        payment(t.clientWallet, '0.01000000'),
        payment(unfunded, '0.01000000'),
        payment(t.clientWallet, '0.02000000'),
      ];
      const before = await own.daemon.balance(t.clientWallet);

      const outcomes = await escrow.holdBatch(payments);
      expect(outcomes).toHaveLength(3);
      expect(outcomes[1].error).toBeInstanceOf(WalletDaemonRejected);
      expect(outcomes[1].error).toMatchObject({ status: 402, code: 'INSUFFICIENT_FUNDS', insufficientFunds: true });
      for (const i of [0, 2]) {
        const { hold } = outcomes[i] as { hold: { escrow_id: string; address: string; transaction_hash: string } };
        const transfers = await own.daemon.escrowTransfers(hold.escrow_id);
        expect(transfers).toEqual([
          expect.objectContaining({
            kind: 'create',
            transaction_hash: hold.transaction_hash,
            to: hold.address,
            amount: payments[i].amount,
          }),
        ]);
      }
      expect(new Decimal(before).minus(await own.daemon.balance(t.clientWallet)).toFixed(8)).toBe('0.03000000');

      expect(await escrow.holdBatch([payments[0], payments[2]])).toEqual([outcomes[0], outcomes[2]]);
      expect(await escrow.hold(payments[0])).toEqual(expect.objectContaining((outcomes[0] as { hold: object }).hold));
      expect(new Decimal(before).minus(await own.daemon.balance(t.clientWallet)).toFixed(8)).toBe('0.03000000');
    });

    it('rejects the whole call with the 404 of a daemon without the route, so the caller can fall back', async () => {
      const server: Server = createServer((req, res) => {
        req.resume();
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end(JSON.stringify({ code: 'NOT_FOUND', message: 'no such route' }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const config = {
          ...t.app.get<AppConfig>(APP_CONFIG),
          walletDaemonUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        };
        // The one provider `local`, at that server (PAYMENT_PROVIDERS unset).
        const providers = parseProviders(undefined, config.currencies, { url: config.walletDaemonUrl, token: 'token' });
        const escrow = new EscrowService(
          new PaymentProviders(
            { ...config, paymentProviders: providers },
            t.app.get(MetricsService),
            t.app.get(Transactions),
            t.app.get(ProviderStateRepository),
          ),
        );
        const error = await escrow.holdBatch([payment(t.clientWallet, '0.01')]).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(WalletDaemonRejected);
        expect(error).toMatchObject({ status: 404 });
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });
  });
});
