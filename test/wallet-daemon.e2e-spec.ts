import { randomUUID } from 'node:crypto';
import Decimal from 'decimal.js';
import { Currency as DaemonCurrency, CurrencyRegistry } from '../src/wallet-daemon/currencies';
import { HdWallet } from '../src/wallet-daemon/hd-wallet';
import { DaemonEndpoint, PrivateDaemon, sharedDaemon, startPrivateDaemon, TEST_WALLET_SEED } from './support/daemon';
import { withClient } from './support/postgres';

// The local wallet daemon over HTTP. Global setup spawns the shared daemon
// (spawnWalletDaemon) and sets WALLET_DAEMON_URL and WALLET_DAEMON_TOKEN. Fault
// settings are daemon-wide, so the fault tests run against a private daemon of
// this file and never disturb test files running in parallel.

type Currency = 'BTC' | 'AITBC';

interface ApiResponse {
  status: number;
  // Response bodies are checked field by field below.
  body: any;
  headers: Headers;
}

interface CallOptions {
  body?: unknown;
  key?: string;
  /** null: send no Authorization header. */
  token?: string | null;
}

interface FaultPatch {
  fail_rate?: number;
  latency_ms?: number;
  drop_rate?: number;
}

interface EscrowFixture {
  paymentId: string;
  escrowId: string;
  address: string;
  amount: string;
  payer: string;
  payee: string;
  refundAddress: string;
  createHash: string;
}

const CURRENCIES: Currency[] = ['BTC', 'AITBC'];

/** Raw HTTP access to one daemon: statuses and headers stay visible. */
class DaemonApi {
  constructor(private readonly endpoint: DaemonEndpoint) {}

  async call(method: 'GET' | 'POST', path: string, options: CallOptions = {}): Promise<ApiResponse> {
    const token = options.token === undefined ? this.endpoint.token : options.token;
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (options.key !== undefined) headers['idempotency-key'] = options.key;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${this.endpoint.url}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
  }

  get(path: string, options?: CallOptions): Promise<ApiResponse> {
    return this.call('GET', path, options);
  }

  post(path: string, body: unknown, key?: string): Promise<ApiResponse> {
    return this.call('POST', path, { body, key });
  }

  async newAddress(currency: Currency = 'BTC'): Promise<string> {
    const { status, body } = await this.post('/api/v1/addresses', { currency });
    expect(status).toBe(201);
    return body.address;
  }

  async fund(address: string, amount: string, currency: Currency = 'BTC'): Promise<void> {
    const { status } = await this.post('/api/v1/faucet', { address, amount, currency });
    expect(status).toBe(200);
  }

  async balanceOf(address: string, currency: Currency = 'BTC'): Promise<string> {
    const { status, body } = await this.get(`/api/v1/accounts/${address}?currency=${currency}`);
    expect(status).toBe(200);
    return body.balance;
  }

  async transfersOf(escrowId: string): Promise<Array<{ kind: string; transaction_hash: string }>> {
    const { status, body } = await this.get(`/api/v1/ledger/escrows/${escrowId}/transfers`);
    expect(status).toBe(200);
    return body.items;
  }

  async escrowState(escrowId: string): Promise<string> {
    return (await this.get(`/api/v1/escrow/${escrowId}`)).body.state;
  }

  async setFaults(settings: FaultPatch): Promise<unknown> {
    const { status, body } = await this.post('/api/v1/faults', settings);
    expect(status).toBe(200);
    return body;
  }

  /** A funded payer, a held escrow of `amount`, and fresh payee and refund addresses. */
  async heldEscrow(amount = '0.25000000', currency: Currency = 'BTC'): Promise<EscrowFixture> {
    const payer = await this.newAddress(currency);
    await this.fund(payer, '1', currency);
    const paymentId = randomUUID();
    const { status, body } = await this.post(
      '/api/v1/escrow/create',
      { payment_id: paymentId, amount, currency, payer, timeout_seconds: 3600 },
      `${paymentId}:create`,
    );
    expect(status).toBe(201);
    return {
      paymentId,
      escrowId: body.escrow_id,
      address: body.address,
      amount,
      payer,
      payee: await this.newAddress(currency),
      refundAddress: await this.newAddress(currency),
      createHash: body.transaction_hash,
    };
  }

  /** Conservation: every minted coin is on an address or in a hold. */
  async expectLedgerConserved(): Promise<void> {
    for (const currency of CURRENCIES) {
      const { body } = await this.get(`/api/v1/ledger/totals?currency=${currency}`);
      expect(new Decimal(body.balances).plus(body.held).toFixed(8)).toBe(body.minted);
    }
  }
}

const releaseBody = (e: EscrowFixture) => ({
  escrow_id: e.escrowId,
  address: e.address,
  payee: e.payee,
  amount: e.amount,
  reason: 'job completed',
});

const refundBody = (e: EscrowFixture) => ({
  escrow_id: e.escrowId,
  address: e.address,
  refund_address: e.refundAddress,
  amount: e.amount,
  reason: 'job failed',
});

const shared = new DaemonApi(sharedDaemon().endpoint);
const get = (path: string, options?: CallOptions) => shared.get(path, options);
const post = (path: string, body: unknown, key?: string) => shared.post(path, body, key);
const call = (method: 'GET' | 'POST', path: string, options?: CallOptions) => shared.call(method, path, options);
const newAddress = (currency?: Currency) => shared.newAddress(currency);
const fund = (address: string, amount: string, currency?: Currency) => shared.fund(address, amount, currency);
const balanceOf = (address: string, currency?: Currency) => shared.balanceOf(address, currency);
const transfersOf = (escrowId: string) => shared.transfersOf(escrowId);
const heldEscrow = (amount?: string, currency?: Currency) => shared.heldEscrow(amount, currency);
const escrowState = (escrowId: string) => shared.escrowState(escrowId);

describe('local wallet daemon (HTTP)', () => {
  afterEach(() => shared.expectLedgerConserved());

  describe('auth', () => {
    it('answers 401 without or with a wrong bearer token', async () => {
      const address = await newAddress();
      for (const token of [null, 'wrong-token']) {
        const read = await get(`/api/v1/accounts/${address}?currency=BTC`, { token });
        expect(read.status).toBe(401);
        expect(read.body).toEqual({ code: 'UNAUTHORIZED', message: expect.any(String) });
        const write = await call('POST', '/api/v1/faucet', { token, body: { address, amount: '1', currency: 'BTC' } });
        expect(write.status).toBe(401);
      }
      expect(await balanceOf(address)).toBe('0.00000000');
    });

    it('serves /health without a token', async () => {
      const { status, body } = await get('/health', { token: null });
      expect(status).toBe(200);
      expect(body.status).toBe('ok');
    });
  });

  describe('addresses and faucet', () => {
    it('derives fresh checksummed addresses per currency', async () => {
      const [a, b, token] = await Promise.all([newAddress('BTC'), newAddress('BTC'), newAddress('AITBC')]);
      expect(a).toMatch(/^bcrt1q[02-9ac-hj-np-z]{38}$/);
      expect(b).not.toBe(a);
      expect(token).toMatch(/^aitbc1q[02-9ac-hj-np-z]{38}$/);
    });

    it('mints to an address and reports its balance with 8 decimals', async () => {
      const address = await newAddress();
      expect(await balanceOf(address)).toBe('0.00000000');
      const first = await post('/api/v1/faucet', { address, amount: '1.5', currency: 'BTC' });
      expect(first.status).toBe(200);
      expect(first.body.transaction_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(first.body.balance).toBe('1.50000000');
      const second = await post('/api/v1/faucet', { address, amount: 0.25, currency: 'BTC' });
      expect(second.body.balance).toBe('1.75000000');
      expect(await balanceOf(address)).toBe('1.75000000');
    });

    it('keeps currencies apart', async () => {
      const address = await newAddress('AITBC');
      await fund(address, '3', 'AITBC');
      expect(await balanceOf(address, 'AITBC')).toBe('3.00000000');
      const wrongLedger = await get(`/api/v1/accounts/${address}?currency=BTC`);
      expect(wrongLedger.status).toBe(400);
    });

    it.each([
      [{ amount: '0' }],
      [{ amount: '-1' }],
      [{ amount: '0.000000001' }],
      [{ amount: '1e-3' }],
      [{ currency: 'DOGE' }],
      [{ address: 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4' }],
      [{ address: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt081' }],
    ])('rejects a faucet request with %j as 400 INVALID_REQUEST', async (change) => {
      const address = await newAddress();
      const { status, body } = await post('/api/v1/faucet', { address, amount: '1', currency: 'BTC', ...change });
      expect(status).toBe(400);
      expect(body.code).toBe('INVALID_REQUEST');
      expect(await balanceOf(address)).toBe('0.00000000');
    });
  });

  describe('escrow create', () => {
    it('moves the amount from the payer into a fresh hold', async () => {
      const payer = await newAddress();
      await fund(payer, '1');
      const paymentId = randomUUID();
      const { status, body } = await post('/api/v1/escrow/create', {
        payment_id: paymentId,
        amount: '0.4',
        currency: 'BTC',
        payer,
        timeout_seconds: 120,
      });
      expect(status).toBe(201);
      expect(body).toMatchObject({ amount: '0.40000000', currency: 'BTC' });
      expect(body.escrow_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(body.address).toMatch(/^bcrt1q/);
      expect(body.address).not.toBe(payer);
      expect(body.transaction_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(new Date(body.expires_at).getTime()).toBeGreaterThan(Date.now() + 100_000);

      expect(await balanceOf(payer)).toBe('0.60000000');
      expect(await balanceOf(body.address)).toBe('0.40000000');
      const escrow = await get(`/api/v1/escrow/${body.escrow_id}`);
      expect(escrow.body).toMatchObject({
        escrow_id: body.escrow_id,
        payment_id: paymentId,
        address: body.address,
        amount: '0.40000000',
        currency: 'BTC',
        payer,
        state: 'held',
        transaction_hash: null,
        create_transaction_hash: body.transaction_hash,
        payee: null,
        settled_at: null,
      });
      const transfers = await transfersOf(body.escrow_id);
      expect(transfers).toEqual([
        expect.objectContaining({ kind: 'create', amount: '0.40000000', from: payer, to: body.address }),
      ]);
    });

    it('answers 402 when the payer is short, and moves nothing', async () => {
      const payer = await newAddress();
      await fund(payer, '0.1');
      const request = { payment_id: randomUUID(), amount: '0.10000001', currency: 'BTC', payer, timeout_seconds: 60 };
      const { status, body } = await post('/api/v1/escrow/create', request);
      expect(status).toBe(402);
      expect(body.code).toBe('INSUFFICIENT_FUNDS');
      expect(await balanceOf(payer)).toBe('0.10000000');

      const stranger = await newAddress();
      const unfunded = await post('/api/v1/escrow/create', { ...request, payer: stranger });
      expect(unfunded.status).toBe(402);
    });

    it('answers 404 for an unknown escrow', async () => {
      const unknown = randomUUID();
      expect((await get(`/api/v1/escrow/${unknown}`)).body.code).toBe('ESCROW_NOT_FOUND');
      expect((await get(`/api/v1/escrow/${unknown}`)).status).toBe(404);
      expect((await get('/api/v1/escrow/not-a-uuid')).status).toBe(404);
      const payee = await newAddress();
      const release = await post('/api/v1/escrow/release', { escrow_id: unknown, payee });
      expect(release.status).toBe(404);
      const refund = await post('/api/v1/refund', { escrow_id: unknown, refund_address: payee });
      expect(refund.status).toBe(404);
    });
  });

  describe('settlement', () => {
    it('releases the whole hold to the payee', async () => {
      const escrow = await heldEscrow('0.25');
      const { status, body } = await post('/api/v1/escrow/release', releaseBody(escrow));
      expect(status).toBe(200);
      expect(body).toMatchObject({ escrow_id: escrow.escrowId, state: 'released' });
      expect(body.transaction_hash).toMatch(/^[0-9a-f]{64}$/);

      expect(await balanceOf(escrow.payee)).toBe('0.25000000');
      expect(await balanceOf(escrow.address)).toBe('0.00000000');
      expect(await balanceOf(escrow.payer)).toBe('0.75000000');
      const view = await get(`/api/v1/escrow/${escrow.escrowId}`);
      expect(view.body).toMatchObject({
        state: 'released',
        transaction_hash: body.transaction_hash,
        payee: escrow.payee,
      });
      expect(view.body.settled_at).toEqual(expect.any(String));
      expect((await transfersOf(escrow.escrowId)).map((t) => t.kind)).toEqual(['create', 'release']);
    });

    it('refunds the whole hold to the refund address', async () => {
      const escrow = await heldEscrow('0.3');
      const { status, body } = await post('/api/v1/refund', refundBody(escrow));
      expect(status).toBe(200);
      expect(body).toMatchObject({ escrow_id: escrow.escrowId, state: 'refunded' });
      expect(await balanceOf(escrow.refundAddress)).toBe('0.30000000');
      expect(await balanceOf(escrow.address)).toBe('0.00000000');
      expect((await get(`/api/v1/escrow/${escrow.escrowId}`)).body).toMatchObject({
        state: 'refunded',
        transaction_hash: body.transaction_hash,
      });
    });

    it('settles AITBC escrows the same way', async () => {
      const escrow = await heldEscrow('0.5', 'AITBC');
      expect(escrow.address).toMatch(/^aitbc1q/);
      expect((await post('/api/v1/escrow/release', releaseBody(escrow))).status).toBe(200);
      expect(await balanceOf(escrow.payee, 'AITBC')).toBe('0.50000000');
    });

    it('answers 409 ESCROW_NOT_HELD to a release after a refund, and moves nothing', async () => {
      const escrow = await heldEscrow();
      expect((await post('/api/v1/refund', refundBody(escrow))).status).toBe(200);
      const { status, body } = await post('/api/v1/escrow/release', releaseBody(escrow));
      expect(status).toBe(409);
      expect(body.code).toBe('ESCROW_NOT_HELD');
      const again = await post('/api/v1/refund', refundBody(escrow));
      expect(again.status).toBe(409);

      expect(await balanceOf(escrow.payee)).toBe('0.00000000');
      expect(await balanceOf(escrow.refundAddress)).toBe('0.25000000');
      expect((await transfersOf(escrow.escrowId)).map((t) => t.kind)).toEqual(['create', 'refund']);
      expect(await escrowState(escrow.escrowId)).toBe('refunded');
    });

    it('answers 409 ESCROW_MISMATCH when the address or amount do not match, and moves nothing', async () => {
      const escrow = await heldEscrow('0.25');
      const wrongAmount = await post('/api/v1/escrow/release', { ...releaseBody(escrow), amount: '0.26' });
      expect(wrongAmount.status).toBe(409);
      expect(wrongAmount.body.code).toBe('ESCROW_MISMATCH');
      const wrongAddress = await post('/api/v1/refund', { ...refundBody(escrow), address: escrow.payer });
      expect(wrongAddress.status).toBe(409);
      expect(wrongAddress.body.code).toBe('ESCROW_MISMATCH');
      expect(await escrowState(escrow.escrowId)).toBe('held');
      expect(await balanceOf(escrow.address)).toBe('0.25000000');
    });

    it('rejects a payee that is not an address of the escrow currency', async () => {
      const escrow = await heldEscrow();
      const { status } = await post('/api/v1/escrow/release', {
        ...releaseBody(escrow),
        payee: await newAddress('AITBC'),
      });
      expect(status).toBe(400);
      expect(await escrowState(escrow.escrowId)).toBe('held');
    });

    it('applies exactly one of 20 concurrent release/refund calls sharing the <payment_id>:settle key', async () => {
      const escrow = await heldEscrow();
      const key = `${escrow.paymentId}:settle`;
      const calls = Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? post('/api/v1/escrow/release', releaseBody(escrow), key)
          : post('/api/v1/refund', refundBody(escrow), key),
      );
      const responses = await Promise.all(calls);

      const succeeded = responses.filter((r) => r.status === 200);
      const states = new Set(succeeded.map((r) => r.body.state));
      const hashes = new Set(succeeded.map((r) => r.body.transaction_hash));
      expect(states.size).toBe(1);
      expect(hashes.size).toBe(1);
      // The winner's route is answered (first time or replayed), the other route is refused.
      expect(succeeded).toHaveLength(10);
      expect(succeeded.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(9);
      for (const refused of responses.filter((r) => r.status !== 200)) {
        expect(refused.status).toBe(409);
        expect(refused.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
      }

      const transfers = await transfersOf(escrow.escrowId);
      expect(transfers).toHaveLength(2);
      expect(transfers[1].transaction_hash).toBe([...hashes][0]);
      const paid = [await balanceOf(escrow.payee), await balanceOf(escrow.refundAddress)].sort();
      expect(paid).toEqual(['0.00000000', '0.25000000']);
    });

    it('applies exactly one of 20 concurrent settlements with different keys (compare-and-set)', async () => {
      const escrow = await heldEscrow();
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          i % 2 === 0
            ? post('/api/v1/escrow/release', releaseBody(escrow), `${escrow.paymentId}:release:${i}`)
            : post('/api/v1/refund', refundBody(escrow)),
        ),
      );
      expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
      for (const refused of responses.filter((r) => r.status !== 200)) {
        expect(refused.status).toBe(409);
        expect(refused.body.code).toBe('ESCROW_NOT_HELD');
      }
      expect(await transfersOf(escrow.escrowId)).toHaveLength(2);
    });
  });

  describe('settle-batch', () => {
    const settleBatch = (items: unknown[]) => post('/api/v1/escrow/settle-batch', { items });
    const releaseItem = (e: EscrowFixture, key = `${e.paymentId}:settle`) => ({
      action: 'release',
      idempotency_key: key,
      ...releaseBody(e),
    });
    const refundItem = (e: EscrowFixture, key = `${e.paymentId}:settle`) => ({
      action: 'refund',
      idempotency_key: key,
      ...refundBody(e),
    });

    it('settles releases and refunds in one call, answering each item in request order', async () => {
      const escrows = [await heldEscrow('0.1'), await heldEscrow('0.2'), await heldEscrow('0.3', 'AITBC')];
      const { status, body } = await settleBatch([
        releaseItem(escrows[0]),
        refundItem(escrows[1]),
        releaseItem(escrows[2]),
      ]);
      expect(status).toBe(200);
      expect(body.results.map((r: any) => [r.idempotency_key, r.status, r.body.state, r.replayed])).toEqual([
        [`${escrows[0].paymentId}:settle`, 200, 'released', false],
        [`${escrows[1].paymentId}:settle`, 200, 'refunded', false],
        [`${escrows[2].paymentId}:settle`, 200, 'released', false],
      ]);
      expect(await balanceOf(escrows[0].payee)).toBe('0.10000000');
      expect(await balanceOf(escrows[1].refundAddress)).toBe('0.20000000');
      expect(await balanceOf(escrows[2].payee, 'AITBC')).toBe('0.30000000');
      for (const [i, escrow] of escrows.entries()) {
        const transfers = await transfersOf(escrow.escrowId);
        expect(transfers.map((t) => t.kind)).toEqual(['create', i === 1 ? 'refund' : 'release']);
        expect(transfers[1].transaction_hash).toBe(body.results[i].body.transaction_hash);
      }
    });

    it('is the very same settlement as the single call with that key: either way replays the other', async () => {
      const [single, batched] = [await heldEscrow(), await heldEscrow()];
      const first = await post('/api/v1/escrow/release', releaseBody(single), `${single.paymentId}:settle`);
      const { body } = await settleBatch([releaseItem(single), refundItem(batched)]);
      expect(body.results[0]).toMatchObject({
        status: 200,
        replayed: true,
        body: { transaction_hash: first.body.transaction_hash },
      });

      const replay = await post('/api/v1/refund', refundBody(batched), `${batched.paymentId}:settle`);
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.body.transaction_hash).toBe(body.results[1].body.transaction_hash);
      // The key is bound to the route: the other action with it is refused, as for single calls.
      const { body: other } = await settleBatch([releaseItem(batched)]);
      expect(other.results[0]).toMatchObject({ status: 409, body: { code: 'IDEMPOTENCY_KEY_REUSED' } });
      expect(await transfersOf(single.escrowId)).toHaveLength(2);
      expect(await transfersOf(batched.escrowId)).toHaveLength(2);
    });

    it('answers a failing item with its own error and still commits the others; the failed ones move nothing', async () => {
      const [good, settled, mismatched, badPayee] = [
        await heldEscrow(),
        await heldEscrow(),
        await heldEscrow(),
        await heldEscrow(),
      ];
      expect((await post('/api/v1/refund', refundBody(settled))).status).toBe(200);
      const unknown = { ...good, escrowId: randomUUID(), paymentId: randomUUID() };
      const { status, body } = await settleBatch([
        releaseItem(settled),
        releaseItem(unknown),
        { ...releaseItem(mismatched), amount: '0.1' },
        { ...releaseItem(badPayee), payee: 'not-an-address' },
        releaseItem(good),
      ]);
      expect(status).toBe(200);
      expect(body.results.map((r: any) => [r.status, r.body.code ?? r.body.state])).toEqual([
        [409, 'ESCROW_NOT_HELD'],
        [404, 'ESCROW_NOT_FOUND'],
        [409, 'ESCROW_MISMATCH'],
        [400, 'INVALID_REQUEST'],
        [200, 'released'],
      ]);
      expect(await escrowState(mismatched.escrowId)).toBe('held');
      expect(await escrowState(badPayee.escrowId)).toBe('held');
      expect(await balanceOf(settled.payee)).toBe('0.00000000');
      expect(await balanceOf(good.payee)).toBe('0.25000000');
      // Errors are not stored: the failed item's key settles once the request is right.
      const { body: retried } = await settleBatch([releaseItem(mismatched)]);
      expect(retried.results[0]).toMatchObject({ status: 200, replayed: false, body: { state: 'released' } });
    });

    it('answers a batch that repeats a key or an escrow as the same calls one after another would', async () => {
      const [repeatedKey, repeatedEscrow] = [await heldEscrow(), await heldEscrow()];
      const { body } = await settleBatch([
        releaseItem(repeatedKey),
        releaseItem(repeatedKey),
        refundItem(repeatedEscrow),
        releaseItem(repeatedEscrow, `${repeatedEscrow.paymentId}:other`),
      ]);
      expect(body.results.map((r: any) => [r.status, r.replayed, r.body.code ?? r.body.state])).toEqual([
        [200, false, 'released'],
        [200, true, 'released'],
        [200, false, 'refunded'],
        [409, false, 'ESCROW_NOT_HELD'],
      ]);
      expect(body.results[1].body.transaction_hash).toBe(body.results[0].body.transaction_hash);
      expect(await balanceOf(repeatedKey.payee)).toBe('0.25000000');
      expect(await balanceOf(repeatedEscrow.refundAddress)).toBe('0.25000000');
      expect(await balanceOf(repeatedEscrow.payee)).toBe('0.00000000');
    });

    it('settles 200 escrows paying the same two addresses in one call, each with its own transfer', async () => {
      const payee = await newAddress();
      const refundAddress = await newAddress();
      const escrows = (await Promise.all(Array.from({ length: 200 }, () => heldEscrow('0.001')))).map((e) => ({
        ...e,
        payee,
        refundAddress,
      }));
      const { status, body } = await settleBatch(escrows.map((e, i) => (i % 2 === 0 ? releaseItem(e) : refundItem(e))));
      expect(status).toBe(200);
      expect(body.results.every((r: any) => r.status === 200)).toBe(true);
      expect(new Set(body.results.map((r: any) => r.body.transaction_hash)).size).toBe(200);
      expect(await balanceOf(payee)).toBe('0.10000000');
      expect(await balanceOf(refundAddress)).toBe('0.10000000');
      for (const escrow of escrows.slice(0, 3)) expect(await balanceOf(escrow.address)).toBe('0.00000000');
    });

    it('applies one settlement when concurrent batches race for the same escrows with different keys', async () => {
      const escrows = await Promise.all(Array.from({ length: 5 }, () => heldEscrow()));
      const batches = await Promise.all(
        Array.from({ length: 6 }, (_, b) =>
          settleBatch(
            escrows.map((e) =>
              b % 2 === 0 ? releaseItem(e, `${e.paymentId}:r${b}`) : refundItem(e, `${e.paymentId}:f${b}`),
            ),
          ),
        ),
      );
      for (const [i, escrow] of escrows.entries()) {
        const answers = batches.map(({ body }) => body.results[i]);
        expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
        expect(answers.filter((a) => a.status === 409 && a.body.code === 'ESCROW_NOT_HELD')).toHaveLength(5);
        expect(await transfersOf(escrow.escrowId)).toHaveLength(2);
      }
    });

    // Each malformed batch also carries a valid settlement, which must not be applied.
    it.each<[string, (valid: object) => unknown]>([
      ['no items list', (valid) => ({ item: valid })],
      ['items that are not a list', (valid) => ({ items: { 0: valid } })],
      ['more than 500 items', (valid) => ({ items: [valid, ...Array.from({ length: 500 }, () => valid)] })],
      ['an unknown action', (valid) => ({ items: [valid, { ...valid, action: 'burn' }] })],
      ['an item without a key', (valid) => ({ items: [valid, { ...valid, idempotency_key: undefined }] })],
      ['an over-long key', (valid) => ({ items: [valid, { ...valid, idempotency_key: 'k'.repeat(256) }] })],
    ])('answers 400 to a batch with %s, and applies nothing', async (_name, batch) => {
      const escrow = await heldEscrow();
      const { status, body } = await post('/api/v1/escrow/settle-batch', batch(releaseItem(escrow)));
      expect(status).toBe(400);
      expect(body.code).toBe('INVALID_REQUEST');
      expect(await escrowState(escrow.escrowId)).toBe('held');
    });

    it('answers 400 to an empty batch', async () => {
      const { status, body } = await settleBatch([]);
      expect(status).toBe(400);
      expect(body.code).toBe('INVALID_REQUEST');
    });
  });

  describe('idempotency', () => {
    it('replays a create with the same key: same escrow, same hash, payer debited once', async () => {
      const payer = await newAddress();
      await fund(payer, '1');
      const paymentId = randomUUID();
      const request = { payment_id: paymentId, amount: '0.2', currency: 'BTC', payer, timeout_seconds: 60 };
      const first = await post('/api/v1/escrow/create', request, `${paymentId}:create`);
      const second = await post('/api/v1/escrow/create', request, `${paymentId}:create`);
      expect(first.status).toBe(201);
      expect(second.status).toBe(201);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      expect(second.headers.get('idempotent-replayed')).toBe('true');
      expect(second.body).toEqual(first.body);
      expect(await balanceOf(payer)).toBe('0.80000000');
    });

    it('replays a release with the same transaction hash', async () => {
      const escrow = await heldEscrow();
      const key = `${escrow.paymentId}:settle`;
      const first = await post('/api/v1/escrow/release', releaseBody(escrow), key);
      const replay = await post('/api/v1/escrow/release', releaseBody(escrow), key);
      expect(replay.status).toBe(200);
      expect(replay.body.transaction_hash).toBe(first.body.transaction_hash);
      expect(await balanceOf(escrow.payee)).toBe('0.25000000');
      expect(await transfersOf(escrow.escrowId)).toHaveLength(2);
    });

    it('answers 409 IDEMPOTENCY_KEY_REUSED to the same key with a different body, and applies nothing', async () => {
      const address = await newAddress();
      const key = randomUUID();
      expect((await post('/api/v1/faucet', { address, amount: '1', currency: 'BTC' }, key)).status).toBe(200);
      const reused = await post('/api/v1/faucet', { address, amount: '2', currency: 'BTC' }, key);
      expect(reused.status).toBe(409);
      expect(reused.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
      expect(await balanceOf(address)).toBe('1.00000000');
    });

    it('lets a failed request be retried with its key (errors are not stored)', async () => {
      const payer = await newAddress();
      const paymentId = randomUUID();
      const request = { payment_id: paymentId, amount: '0.5', currency: 'BTC', payer, timeout_seconds: 60 };
      expect((await post('/api/v1/escrow/create', request, `${paymentId}:create`)).status).toBe(402);
      await fund(payer, '0.5');
      expect((await post('/api/v1/escrow/create', request, `${paymentId}:create`)).status).toBe(201);
      expect(await balanceOf(payer)).toBe('0.00000000');
    });
  });

  describe('fault injection (private daemon)', () => {
    let faulty: PrivateDaemon;
    let api: DaemonApi;

    beforeAll(async () => {
      faulty = await startPrivateDaemon();
      api = new DaemonApi(faulty.daemon.endpoint);
    });

    afterEach(async () => {
      await api.setFaults({ fail_rate: 0, latency_ms: 0, drop_rate: 0 });
      await api.expectLedgerConserved();
    });

    afterAll(() => faulty?.stop());

    it('answers 503 FAULT_INJECTED at fail_rate 1 and applies nothing', async () => {
      const address = await api.newAddress();
      const key = randomUUID();
      expect(await api.setFaults({ fail_rate: 1 })).toEqual({ fail_rate: 1, latency_ms: 0, drop_rate: 0 });
      const failed = await api.post('/api/v1/faucet', { address, amount: '1', currency: 'BTC' }, key);
      expect(failed.status).toBe(503);
      expect(failed.body.code).toBe('FAULT_INJECTED');
      expect((await api.get(`/api/v1/accounts/${address}`)).status).toBe(503);
      expect((await api.get('/health', { token: null })).status).toBe(200);

      await api.setFaults({ fail_rate: 0 });
      expect(await api.balanceOf(address)).toBe('0.00000000');
      // The key was not used up: the retry runs for real.
      const retried = await api.post('/api/v1/faucet', { address, amount: '1', currency: 'BTC' }, key);
      expect(retried.status).toBe(200);
      expect(retried.headers.get('idempotent-replayed')).toBeNull();
      expect(await api.balanceOf(address)).toBe('1.00000000');
    });

    it('drops the answer after doing the work; a retry with the same key replays it', async () => {
      const escrow = await api.heldEscrow();
      const key = `${escrow.paymentId}:settle`;
      await api.setFaults({ drop_rate: 1 });
      await expect(api.post('/api/v1/escrow/release', releaseBody(escrow), key)).rejects.toThrow();
      await api.setFaults({ drop_rate: 0 });

      const view = await api.get(`/api/v1/escrow/${escrow.escrowId}`);
      expect(view.body.state).toBe('released');
      const retried = await api.post('/api/v1/escrow/release', releaseBody(escrow), key);
      expect(retried.status).toBe(200);
      expect(retried.headers.get('idempotent-replayed')).toBe('true');
      expect(retried.body.transaction_hash).toBe(view.body.transaction_hash);
      expect(await api.balanceOf(escrow.payee)).toBe('0.25000000');
      expect(await api.transfersOf(escrow.escrowId)).toHaveLength(2);
    });

    it('delays answers by latency_ms', async () => {
      await api.setFaults({ latency_ms: 300 });
      const started = Date.now();
      await api.newAddress();
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    });

    it('rejects invalid fault settings', async () => {
      const { status, body } = await api.post('/api/v1/faults', { fail_rate: 2 });
      expect(status).toBe(400);
      expect(body.code).toBe('INVALID_REQUEST');
      expect((await api.get('/api/v1/faults')).body).toEqual({ fail_rate: 0, latency_ms: 0, drop_rate: 0 });
    });
  });
  describe('addresses used outside the sequence', () => {
    let a: PrivateDaemon;
    let b: PrivateDaemon;
    let c: PrivateDaemon;
    let d: PrivateDaemon;
    afterAll(async () => {
      await Promise.all([a?.stop(), b?.stop(), c?.stop(), d?.stop()]);
    });

    it('never makes a hold of an address the ledger already knows: a daemon from the same seed skips it', async () => {
      // Two fresh daemons from one seed derive the same addresses in the same order.
      [a, b] = await Promise.all([startPrivateDaemon(), startPrivateDaemon()]);
      const [apiA, apiB] = [new DaemonApi(a.daemon.endpoint), new DaemonApi(b.daemon.endpoint)];
      const first = await apiA.newAddress();
      const second = await apiA.newAddress();
      // At B both are ordinary funded addresses, though B has not handed either out yet.
      await apiB.fund(first, '1');
      await apiB.fund(second, '5');

      const { status, body } = await apiB.post('/api/v1/escrow/create', {
        payment_id: randomUUID(),
        amount: '2',
        currency: 'BTC',
        payer: second,
        timeout_seconds: 120,
      });
      expect(status).toBe(201);
      expect([first, second]).not.toContain(body.address);
      expect(await apiB.balanceOf(first)).toBe('1.00000000');
      expect(await apiB.balanceOf(second)).toBe('3.00000000');
      expect(await apiB.balanceOf(body.address)).toBe('2.00000000');
      // And an address B hands out is not one of them either.
      expect([first, second, body.address]).not.toContain(await apiB.newAddress());
      await apiB.expectLedgerConserved();
    });

    it('skips them in a create-batch too: every hold is a new account at a new address', async () => {
      [c, d] = await Promise.all([startPrivateDaemon(), startPrivateDaemon()]);
      const [apiC, apiD] = [new DaemonApi(c.daemon.endpoint), new DaemonApi(d.daemon.endpoint)];
      // D's first three indexes, handed out by C and funded at D before D derives any of them.
      const known = [await apiC.newAddress(), await apiC.newAddress(), await apiC.newAddress()];
      for (const address of known) await apiD.fund(address, '1');

      const items = [0, 1, 2].map(() => {
        const payment_id = randomUUID();
        return {
          idempotency_key: `${payment_id}:create`,
          payment_id,
          amount: '0.1',
          currency: 'BTC',
          payer: known[0],
          timeout_seconds: 120,
        };
      });
      const { status, body } = await apiD.post('/api/v1/escrow/create-batch', { items });
      expect(status).toBe(200);
      expect(body.results.map((r: { status: number }) => r.status)).toEqual([201, 201, 201]);
      const holds = body.results.map((r: { body: { address: string } }) => r.body.address);
      expect(new Set(holds).size).toBe(3);
      for (const hold of holds) {
        expect(known).not.toContain(hold);
        expect(await apiD.balanceOf(hold)).toBe('0.10000000');
      }
      expect(await Promise.all(known.map((address) => apiD.balanceOf(address)))).toEqual([
        '0.70000000',
        '1.00000000',
        '1.00000000',
      ]);
      await apiD.expectLedgerConserved();
    });
  });

  describe('two daemons on one database', () => {
    const started: PrivateDaemon[] = [];
    afterAll(async () => {
      await Promise.all(started.map((daemon) => daemon.stop()));
    });

    it('never hold two escrows at one address: every index from the shared sequence, reserved ahead by both and across a restart', async () => {
      // Same seed, same database: the addresses differ only if no index is ever handed out twice.
      const first = await startPrivateDaemon();
      const second = await startPrivateDaemon({ databaseUrl: first.databaseUrl });
      started.push(first, second);
      const [apiA, apiB] = [new DaemonApi(first.daemon.endpoint), new DaemonApi(second.daemon.endpoint)];
      const payer = await apiA.newAddress();
      await apiA.fund(payer, '100');
      const body = () => ({
        payment_id: randomUUID(),
        amount: '0.5',
        currency: 'BTC',
        payer,
        timeout_seconds: 120,
      });
      const create = async (api: DaemonApi): Promise<string[]> => {
        const { status, body: held } = await api.post('/api/v1/escrow/create', body(), randomUUID());
        expect(status).toBe(201);
        return [held.address as string];
      };
      const createBatch = async (api: DaemonApi): Promise<string[]> => {
        const items = [0, 1, 2, 3, 4].map(() => ({ idempotency_key: randomUUID(), ...body() }));
        const { status, body: answer } = await api.post('/api/v1/escrow/create-batch', { items });
        expect(status).toBe(200);
        return answer.results.map((r: { status: number; body: { address: string } }) => {
          expect(r.status).toBe(201);
          return r.body.address;
        });
      };
      // Both daemons at once, single creates and batches interleaved, then the second
      // restarted (its reserved indexes left unused) and creating again.
      const holds: string[] = [];
      for (let round = 0; round < 4; round++) {
        const answers = await Promise.all([create(apiA), createBatch(apiB), createBatch(apiA), create(apiB)]);
        holds.push(...answers.flat());
      }
      await second.stop();
      const restarted = await startPrivateDaemon({ databaseUrl: first.databaseUrl });
      started.push(restarted);
      const apiC = new DaemonApi(restarted.daemon.endpoint);
      holds.push(...(await Promise.all([createBatch(apiC), create(apiA), create(apiC)])).flat());

      expect(holds).toHaveLength(4 * 12 + 7);
      expect(new Set(holds).size).toBe(holds.length);
      // Every hold is at an index the database's sequence handed out (reserved ahead or not),
      // not at one a daemon counted for itself.
      const handedOut = await withClient(first.databaseUrl, async (client) =>
        Number((await client.query('SELECT last_value FROM wallet_daemon.hd_index_btc')).rows[0].last_value),
      );
      const btc = new CurrencyRegistry('regtest').find('BTC') as DaemonCurrency;
      const wallet = new HdWallet(Buffer.from(TEST_WALLET_SEED, 'hex'));
      const chain = new Set(Array.from({ length: handedOut + 1 }, (_, index) => wallet.addressAt(btc, index)));
      expect(holds.filter((hold) => !chain.has(hold))).toEqual([]);
      expect(holds).not.toContain(payer);
      for (const hold of holds) expect(await apiA.balanceOf(hold)).toBe('0.50000000');
      expect(await apiA.balanceOf(payer)).toBe(
        new Decimal(100).minus(new Decimal('0.5').times(holds.length)).toFixed(8),
      );
      await apiA.expectLedgerConserved();
    });
  });
});
