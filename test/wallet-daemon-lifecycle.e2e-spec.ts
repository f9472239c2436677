import { randomUUID } from 'node:crypto';
import Decimal from 'decimal.js';
import { sharedDaemon } from './support/daemon';

// The local wallet daemon's escrow lifecycle routes over HTTP (README "Escrow lifecycle"):
// a release of part of the hold (the payee gets `amount`, the refund address the rest, in
// one transfer), alone and in a settle-batch, and `POST /api/v1/escrow/extend`.

// Response bodies are checked field by field below.
type Body = any;

const endpoint = sharedDaemon().endpoint;

async function call(method: 'GET' | 'POST', path: string, body?: unknown, key?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${endpoint.token}` };
  if (key !== undefined) headers['idempotency-key'] = key;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${endpoint.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

const post = (path: string, body: unknown, key?: string) => call('POST', path, body, key);
const get = (path: string) => call('GET', path);

async function newAddress(): Promise<string> {
  const { status, body } = await post('/api/v1/addresses', { currency: 'BTC' });
  expect(status).toBe(201);
  return body.address;
}

async function balanceOf(address: string): Promise<string> {
  const { status, body } = await get(`/api/v1/accounts/${address}?currency=BTC`);
  expect(status).toBe(200);
  return body.balance;
}

interface Held {
  paymentId: string;
  escrowId: string;
  address: string;
  payer: string;
  payee: string;
  refundAddress: string;
  expiresAt: string;
}

async function heldEscrow(amount: string): Promise<Held> {
  const payer = await newAddress();
  expect((await post('/api/v1/faucet', { address: payer, amount: '1', currency: 'BTC' })).status).toBe(200);
  const paymentId = randomUUID();
  const { status, body } = await post(
    '/api/v1/escrow/create',
    { payment_id: paymentId, amount, currency: 'BTC', payer, timeout_seconds: 3600 },
    `${paymentId}:create`,
  );
  expect(status).toBe(201);
  return {
    paymentId,
    escrowId: body.escrow_id,
    address: body.address,
    payer,
    payee: await newAddress(),
    refundAddress: await newAddress(),
    expiresAt: body.expires_at,
  };
}

const partialRelease = (e: Held, amount: string, extra: Record<string, unknown> = {}) => ({
  escrow_id: e.escrowId,
  address: e.address,
  payee: e.payee,
  amount,
  refund_address: e.refundAddress,
  reason: 'part of the work',
  ...extra,
});

async function expectLedgerConserved(): Promise<void> {
  const { body } = await get('/api/v1/ledger/totals?currency=BTC');
  expect(new Decimal(body.balances).plus(body.held).toFixed(8)).toBe(body.minted);
}

describe('local wallet daemon: escrow lifecycle (HTTP)', () => {
  afterEach(() => expectLedgerConserved());

  describe('partial release', () => {
    it('pays the payee `amount` and the refund address the rest, as the two credits of one release transfer', async () => {
      const escrow = await heldEscrow('0.25');
      const { status, body } = await post(
        '/api/v1/escrow/release',
        partialRelease(escrow, '0.1'),
        `${escrow.paymentId}:settle`,
      );
      expect(status).toBe(200);
      expect(body).toMatchObject({
        escrow_id: escrow.escrowId,
        state: 'released',
        amount: '0.25000000',
        payee: escrow.payee,
        refund_address: escrow.refundAddress,
        released_amount: '0.10000000',
        refunded_amount: '0.15000000',
      });

      expect(await balanceOf(escrow.payee)).toBe('0.10000000');
      expect(await balanceOf(escrow.refundAddress)).toBe('0.15000000');
      expect(await balanceOf(escrow.address)).toBe('0.00000000');
      expect(await balanceOf(escrow.payer)).toBe('0.75000000');

      const transfers = (await get(`/api/v1/ledger/escrows/${escrow.escrowId}/transfers`)).body.items;
      expect(transfers.map((t: Body) => t.kind)).toEqual(['create', 'release']);
      expect(transfers[1]).toMatchObject({
        transaction_hash: body.transaction_hash,
        amount: '0.25000000',
        from: escrow.address,
        to: escrow.payee,
        credits: [
          { address: escrow.payee, amount: '0.10000000' },
          { address: escrow.refundAddress, amount: '0.15000000' },
        ],
      });
      expect((await get(`/api/v1/escrow/${escrow.escrowId}`)).body).toMatchObject({
        state: 'released',
        payee: escrow.payee,
        refund_address: escrow.refundAddress,
        released_amount: '0.10000000',
        refunded_amount: '0.15000000',
        transaction_hash: body.transaction_hash,
      });

      // The same key replays the same settlement; nothing moves twice.
      const replay = await post('/api/v1/escrow/release', partialRelease(escrow, '0.1'), `${escrow.paymentId}:settle`);
      expect(replay).toMatchObject({ status: 200, body: { transaction_hash: body.transaction_hash } });
      expect(await balanceOf(escrow.payee)).toBe('0.10000000');
    });

    it('a release of the whole amount stays a plain release (no refund leg), with or without a refund_address', async () => {
      const escrow = await heldEscrow('0.2');
      const { status, body } = await post('/api/v1/escrow/release', partialRelease(escrow, '0.2'));
      expect(status).toBe(200);
      expect(body.refund_address).toBeUndefined();
      expect(await balanceOf(escrow.payee)).toBe('0.20000000');
      expect(await balanceOf(escrow.refundAddress)).toBe('0.00000000');
      expect((await get(`/api/v1/escrow/${escrow.escrowId}`)).body).toMatchObject({
        refund_address: null,
        released_amount: '0.20000000',
        refunded_amount: '0.00000000',
      });
    });

    it('refuses, moving nothing: more than the hold or less without a refund_address (409), a bad refund_address (400)', async () => {
      const escrow = await heldEscrow('0.25');
      const over = await post('/api/v1/escrow/release', partialRelease(escrow, '0.25000001'));
      expect(over).toMatchObject({ status: 409, body: { code: 'ESCROW_MISMATCH' } });
      const noRefund = await post(
        '/api/v1/escrow/release',
        partialRelease(escrow, '0.1', { refund_address: undefined }),
      );
      // Without a refund_address `amount` stays what it always was: a check that the whole hold moves.
      expect(noRefund).toMatchObject({ status: 409, body: { code: 'ESCROW_MISMATCH' } });
      const badRefund = await post('/api/v1/escrow/release', partialRelease(escrow, '0.1', { refund_address: 'nope' }));
      expect(badRefund).toMatchObject({ status: 400, body: { code: 'INVALID_REQUEST' } });
      const holdAsRefund = await post(
        '/api/v1/escrow/release',
        partialRelease(escrow, '0.1', { refund_address: escrow.address }),
      );
      expect(holdAsRefund).toMatchObject({ status: 400, body: { code: 'INVALID_REQUEST' } });
      const zero = await post('/api/v1/escrow/release', partialRelease(escrow, '0'));
      expect(zero).toMatchObject({ status: 400, body: { code: 'INVALID_REQUEST' } });

      expect((await get(`/api/v1/escrow/${escrow.escrowId}`)).body.state).toBe('held');
      expect(await balanceOf(escrow.address)).toBe('0.25000000');
      expect(await balanceOf(escrow.payee)).toBe('0.00000000');
    });

    it('settle-batch: a partial release item is the very same settlement as its single call', async () => {
      const [batched, whole, refunded] = [await heldEscrow('0.3'), await heldEscrow('0.1'), await heldEscrow('0.2')];
      const items = [
        { action: 'release', idempotency_key: `${batched.paymentId}:settle`, ...partialRelease(batched, '0.12345678') },
        {
          action: 'release',
          idempotency_key: `${whole.paymentId}:settle`,
          escrow_id: whole.escrowId,
          payee: whole.payee,
          amount: '0.1',
        },
        {
          action: 'refund',
          idempotency_key: `${refunded.paymentId}:settle`,
          escrow_id: refunded.escrowId,
          refund_address: refunded.refundAddress,
        },
      ];
      const { status, body } = await post('/api/v1/escrow/settle-batch', { items });
      expect(status).toBe(200);
      expect(body.results.map((r: Body) => [r.status, r.body.state])).toEqual([
        [200, 'released'],
        [200, 'released'],
        [200, 'refunded'],
      ]);
      expect(body.results[0].body).toMatchObject({ released_amount: '0.12345678', refunded_amount: '0.17654322' });
      expect(await balanceOf(batched.payee)).toBe('0.12345678');
      expect(await balanceOf(batched.refundAddress)).toBe('0.17654322');
      expect(await balanceOf(whole.payee)).toBe('0.10000000');
      expect(await balanceOf(refunded.refundAddress)).toBe('0.20000000');

      // The single call with the batch item's key replays it.
      const single = await post(
        '/api/v1/escrow/release',
        partialRelease(batched, '0.12345678'),
        `${batched.paymentId}:settle`,
      );
      expect(single).toMatchObject({ status: 200, body: { transaction_hash: body.results[0].body.transaction_hash } });
      expect(await balanceOf(batched.payee)).toBe('0.12345678');
    });

    it('exactly one of concurrent partial release, whole release and refund sharing the settle key applies', async () => {
      for (let round = 0; round < 3; round++) {
        const escrow = await heldEscrow('0.2');
        const key = `${escrow.paymentId}:settle`;
        const answers = await Promise.all([
          post('/api/v1/escrow/release', partialRelease(escrow, '0.05'), key),
          post('/api/v1/escrow/release', { escrow_id: escrow.escrowId, payee: escrow.payee }, key),
          post('/api/v1/refund', { escrow_id: escrow.escrowId, refund_address: escrow.refundAddress }, key),
          post('/api/v1/escrow/release', partialRelease(escrow, '0.15')),
        ]);
        const applied = answers.filter((a) => a.status === 200);
        expect(applied.length).toBeGreaterThanOrEqual(1);
        // One transfer out of the hold, whatever won; the others were refused or replayed it.
        expect(new Set(applied.map((a) => a.body.transaction_hash)).size).toBe(1);
        const transfers = (await get(`/api/v1/ledger/escrows/${escrow.escrowId}/transfers`)).body.items;
        expect(transfers).toHaveLength(2);
        const paid = new Decimal(await balanceOf(escrow.payee)).plus(await balanceOf(escrow.refundAddress));
        expect(paid.toFixed(8)).toBe('0.20000000');
        expect(await balanceOf(escrow.address)).toBe('0.00000000');
      }
    });
  });

  describe('extend', () => {
    it("moves a held escrow's expiry later, never earlier, and replays by key", async () => {
      const escrow = await heldEscrow('0.1');
      const later = new Date(Date.parse(escrow.expiresAt) + 1800_000).toISOString();
      const key = `${escrow.paymentId}:extend:${later}`;
      const first = await post('/api/v1/escrow/extend', { escrow_id: escrow.escrowId, expires_at: later }, key);
      expect(first).toMatchObject({
        status: 200,
        body: { escrow_id: escrow.escrowId, state: 'held', expires_at: later },
      });
      expect(
        (await post('/api/v1/escrow/extend', { escrow_id: escrow.escrowId, expires_at: later }, key)).body,
      ).toEqual(first.body);
      // An earlier expiry (an older extension arriving late) leaves the latest in place.
      const earlier = new Date(Date.parse(escrow.expiresAt) + 60_000).toISOString();
      const late = await post('/api/v1/escrow/extend', { escrow_id: escrow.escrowId, expires_at: earlier });
      expect(late).toMatchObject({ status: 200, body: { expires_at: later } });
      expect((await get(`/api/v1/escrow/${escrow.escrowId}`)).body.expires_at).toBe(later);
      // Nothing moved: the expiry is bookkeeping.
      expect(await balanceOf(escrow.address)).toBe('0.10000000');
    });

    it('answers 409 ESCROW_NOT_HELD once settled, 404 for an unknown escrow, 400 for a bad expiry', async () => {
      const escrow = await heldEscrow('0.1');
      expect((await post('/api/v1/refund', { escrow_id: escrow.escrowId, refund_address: escrow.payer })).status).toBe(
        200,
      );
      const at = new Date(Date.now() + 7200_000).toISOString();
      expect(await post('/api/v1/escrow/extend', { escrow_id: escrow.escrowId, expires_at: at })).toMatchObject({
        status: 409,
        body: { code: 'ESCROW_NOT_HELD' },
      });
      expect(await post('/api/v1/escrow/extend', { escrow_id: randomUUID(), expires_at: at })).toMatchObject({
        status: 404,
        body: { code: 'ESCROW_NOT_FOUND' },
      });
      const held = await heldEscrow('0.1');
      for (const expires_at of ['tomorrow', '2026-13-40T00:00:00Z', 1764500000, '2026-11-30T12:00:00']) {
        expect(await post('/api/v1/escrow/extend', { escrow_id: held.escrowId, expires_at })).toMatchObject({
          status: 400,
          body: { code: 'INVALID_REQUEST' },
        });
      }
      expect((await get(`/api/v1/escrow/${held.escrowId}`)).body.expires_at).toBe(held.expiresAt);
    });
  });
});
