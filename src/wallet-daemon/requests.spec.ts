import { CurrencyRegistry } from './currencies';
import { DEFAULT_TIMEOUT_SECONDS, escrowIdOrNotFound, parseCreateEscrow, parseFaucet, parseRelease } from './requests';

const currencies = new CurrencyRegistry('regtest');
const PAYER = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
const ESCROW_ID = '01890a5d-ac96-774b-bcce-b302099a8057';

const invalid = expect.objectContaining({ code: 'INVALID_REQUEST' });

describe('parseCreateEscrow', () => {
  const valid = { payment_id: 'pay_1', amount: '0.001', currency: 'BTC', payer: PAYER, timeout_seconds: 60 };

  it('parses a valid body and ignores unknown fields', () => {
    const request = parseCreateEscrow({ ...valid, extra: true }, currencies);
    expect(request.amount.toFixed(8)).toBe('0.00100000');
    expect(request.currency.code).toBe('BTC');
    expect(request).toMatchObject({ paymentId: 'pay_1', payer: PAYER, timeoutSeconds: 60 });
  });

  it('defaults the timeout and canonicalises the payer', () => {
    const request = parseCreateEscrow({ ...valid, payer: PAYER.toUpperCase(), timeout_seconds: undefined }, currencies);
    expect(request.timeoutSeconds).toBe(DEFAULT_TIMEOUT_SECONDS);
    expect(request.payer).toBe(PAYER);
  });

  it.each([
    [{ amount: '0' }],
    [{ amount: '1e-3' }],
    [{ amount: 'abc' }],
    [{ currency: 'ETH' }],
    [{ currency: 'btc' }],
    [{ payer: 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4' }],
    [{ payer: 'aitbc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdkc587' }],
    [{ payment_id: '' }],
    [{ timeout_seconds: 0 }],
    [{ timeout_seconds: '60' }],
  ])('rejects %j', (change) => {
    expect(() => parseCreateEscrow({ ...valid, ...change }, currencies)).toThrow(invalid);
  });

  it('rejects bodies that are not objects', () => {
    for (const body of [null, undefined, 'x', [valid]]) {
      expect(() => parseCreateEscrow(body, currencies)).toThrow(invalid);
    }
  });
});

describe('parseRelease', () => {
  it('keeps the optional address and amount to check against the escrow', () => {
    const request = parseRelease({ escrow_id: ESCROW_ID, payee: PAYER, address: 'x', amount: 1, reason: 'done' });
    expect(request).toMatchObject({ escrowId: ESCROW_ID, recipient: PAYER, expectedAddress: 'x', reason: 'done' });
    expect(request.expectedAmount?.toFixed(8)).toBe('1.00000000');
  });

  it('requires a payee', () => {
    expect(() => parseRelease({ escrow_id: ESCROW_ID })).toThrow(invalid);
  });

  it('treats a malformed escrow id as an unknown escrow', () => {
    expect(() => parseRelease({ escrow_id: 'nope', payee: PAYER })).toThrow(
      expect.objectContaining({ code: 'ESCROW_NOT_FOUND' }),
    );
    expect(() => escrowIdOrNotFound(ESCROW_ID.toUpperCase())).not.toThrow();
  });
});

describe('parseFaucet', () => {
  it('validates the address against the currency', () => {
    expect(
      parseFaucet(
        { currency: 'AITBC', address: 'aitbc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdkc587', amount: '5' },
        currencies,
      ).address,
    ).toBe('aitbc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdkc587');
    expect(() => parseFaucet({ currency: 'AITBC', address: PAYER, amount: '5' }, currencies)).toThrow(invalid);
  });
});
