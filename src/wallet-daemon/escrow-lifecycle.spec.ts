import Decimal from 'decimal.js';
import { settledAmounts } from './amounts';
import { WalletDaemonError } from './errors';
import { parseExtendEscrow, parseRelease, parseRefund } from './requests';

const ESCROW_ID = '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c';

describe('parseRelease: partial release fields', () => {
  it('reads refund_address on a release (the rest of a partial release goes there)', () => {
    const request = parseRelease({ escrow_id: ESCROW_ID, payee: 'p', amount: '0.1', refund_address: 'r' });
    expect(request).toMatchObject({ recipient: 'p', refundAddress: 'r' });
    expect(request.expectedAmount?.eq('0.1')).toBe(true);
  });

  it.each([
    [{}, undefined],
    [{ refund_address: null }, undefined],
  ])('without a refund_address (%o) a release is the whole hold, as before', (extra, refundAddress) => {
    expect(parseRelease({ escrow_id: ESCROW_ID, payee: 'p', ...extra }).refundAddress).toBe(refundAddress);
  });

  it('a refund ignores refund_address as a second leg (it is the recipient)', () => {
    expect(parseRefund({ escrow_id: ESCROW_ID, refund_address: 'r' })).toMatchObject({
      recipient: 'r',
      refundAddress: undefined,
    });
  });

  it.each([[''], [42], ['x'.repeat(200)]])('rejects refund_address %j', (refund_address) => {
    expect(() => parseRelease({ escrow_id: ESCROW_ID, payee: 'p', amount: '0.1', refund_address })).toThrow(
      WalletDaemonError,
    );
  });
});

describe('parseExtendEscrow', () => {
  it.each([
    ['2026-11-30T12:00:00.000Z', '2026-11-30T12:00:00.000Z'],
    ['2026-11-30T12:00:00Z', '2026-11-30T12:00:00.000Z'],
    ['2026-11-30T13:00:00.5+01:00', '2026-11-30T12:00:00.500Z'],
  ])('reads %s', (expires_at, iso) => {
    expect(parseExtendEscrow({ escrow_id: ESCROW_ID, expires_at }).expiresAt.toISOString()).toBe(iso);
  });

  it.each([['tomorrow'], ['2026-11-30T12:00:00'], ['2026-13-45T12:00:00Z'], [1764500000], [null]])(
    'rejects expires_at %j',
    (expires_at) => {
      expect(() => parseExtendEscrow({ escrow_id: ESCROW_ID, expires_at })).toThrow(WalletDaemonError);
    },
  );

  it('an escrow id that is not a uuid names no escrow (404)', () => {
    expect(() => parseExtendEscrow({ escrow_id: 'nope', expires_at: '2026-11-30T12:00:00Z' })).toThrow(
      expect.objectContaining({ code: 'ESCROW_NOT_FOUND' }),
    );
  });
});

describe('settledAmounts', () => {
  it.each([
    [
      { state: 'held', amount: '0.25', released_amount: null },
      { released_amount: null, refunded_amount: null },
    ],
    [
      { state: 'released', amount: '0.25', released_amount: null },
      { released_amount: '0.25000000', refunded_amount: '0.00000000' },
    ],
    [
      { state: 'released', amount: '0.25', released_amount: '0.1' },
      { released_amount: '0.10000000', refunded_amount: '0.15000000' },
    ],
    [
      { state: 'refunded', amount: '0.25', released_amount: null },
      { released_amount: '0.00000000', refunded_amount: '0.25000000' },
    ],
  ] as const)('%o → %o', (escrow, amounts) => {
    expect(settledAmounts(escrow)).toEqual(amounts);
  });

  it('the two parts always add up to the hold', () => {
    const { released_amount, refunded_amount } = settledAmounts({
      state: 'released',
      amount: '0.99999999',
      released_amount: '0.00000001',
    });
    expect(new Decimal(released_amount as string).plus(refunded_amount as string).toFixed(8)).toBe('0.99999999');
  });
});
