import { Decimal } from 'decimal.js';
import { parseCurrencies } from './currencies';
import {
  AmountError,
  AmountErrorReason,
  amountTransformer,
  formatAmount,
  Money,
  parseAmount,
  sumAmounts,
} from './money';

const currencies = parseCurrencies(undefined);
const BTC = currencies.get('BTC')!;
const AITBC = currencies.get('AITBC')!;

function reasonOf(input: unknown, currency = BTC): AmountErrorReason | 'accepted' {
  try {
    parseAmount(input, currency);
    return 'accepted';
  } catch (err) {
    if (err instanceof AmountError) return err.reason;
    throw err;
  }
}

describe('parseAmount', () => {
  it.each<[unknown, string]>([
    ['0.001', '0.001'],
    [0.001, '0.001'],
    ['1', '1'],
    ['0.00000546', '0.00000546'],
    ['1000', '1000'],
    [1000, '1000'],
    ['0.00100000', '0.001'],
    ['999.99999999', '999.99999999'],
  ])('accepts %p', (input, expected) => {
    const amount = parseAmount(input, BTC);
    expect(amount.toFixed()).toBe(expected);
  });

  it.each<[unknown, AmountErrorReason]>([
    ['1e-3', 'not_a_decimal'],
    [1e-7, 'not_a_decimal'], // String(1e-7) === "1e-7"
    ['0x10', 'not_a_decimal'],
    ['NaN', 'not_a_decimal'],
    [NaN, 'not_a_decimal'],
    [Infinity, 'not_a_decimal'],
    [-Infinity, 'not_a_decimal'],
    ['Infinity', 'not_a_decimal'],
    ['-1', 'not_positive'],
    [-1, 'not_positive'],
    ['0', 'not_positive'],
    [0, 'not_positive'],
    ['0.00000000', 'not_positive'],
    ['0.000000001', 'too_many_decimals'],
    ['0.001000000', 'too_many_decimals'], // trailing zeros count: see parseAmount
    [0.30000000000000004, 'not_a_decimal'], // more digits than a double carries exactly
    ['+1', 'not_a_decimal'],
    [' 1', 'not_a_decimal'],
    ['1 ', 'not_a_decimal'],
    ['01', 'not_a_decimal'],
    ['007', 'not_a_decimal'],
    ['.5', 'not_a_decimal'],
    ['5.', 'not_a_decimal'],
    ['1,5', 'not_a_decimal'],
    ['١', 'not_a_decimal'], // Arabic-Indic digit one
    ['', 'not_a_decimal'],
    [null, 'not_a_decimal'],
    [undefined, 'not_a_decimal'],
    [{}, 'not_a_decimal'],
    [[], 'not_a_decimal'],
    [['1'], 'not_a_decimal'],
    [true, 'not_a_decimal'],
    [1n, 'not_a_decimal'],
    ['1000.00000001', 'above_maximum'],
    ['1001', 'above_maximum'],
    [1e21, 'not_a_decimal'], // String(1e21) === "1e+21"
    ['0.00000545', 'below_minimum'],
    [0.00000545, 'below_minimum'], // numbers ≥ 1e-6 stringify without an exponent
    [0.0000001, 'not_a_decimal'], // …smaller ones do not: "1e-7"
  ])('rejects %p as %s', (input, reason) => {
    expect(reasonOf(input)).toBe(reason);
  });

  it('reports the currency limits in the message', () => {
    expect(() => parseAmount('0.00000001', BTC)).toThrow(/minimum of 0\.00000546/);
    expect(() => parseAmount('1000.1', BTC)).toThrow(/maximum of 1000\.00000000/);
    expect(() => parseAmount('0.000000001', BTC)).toThrow(/at most 8/);
  });

  it('uses the limits of the currency given', () => {
    expect(parseAmount('0.00000001', AITBC).toFixed()).toBe('0.00000001');
    expect(reasonOf('0.00000001', BTC)).toBe('below_minimum');
    const sats = parseCurrencies('SAT:0:1:100:aitbc:mainnet').get('SAT')!;
    expect(reasonOf('0.5', sats)).toBe('too_many_decimals');
    expect(reasonOf('1.0', sats)).toBe('too_many_decimals');
    expect(parseAmount('100', sats).toFixed()).toBe('100');
  });

  it('returns a Money instance', () => {
    expect(parseAmount('0.001', BTC)).toBeInstanceOf(Money);
  });
});

describe('formatAmount', () => {
  it('pads to the full scale', () => {
    expect(formatAmount(parseAmount('0.001', BTC), 8)).toBe('0.00100000');
    expect(formatAmount('1000', 8)).toBe('1000.00000000');
    expect(formatAmount('5', 0)).toBe('5');
  });

  it('never uses exponent notation', () => {
    expect(formatAmount(new Decimal('1e-8'), 8)).toBe('0.00000001');
    expect(formatAmount(new Decimal('123456789012.12345678'), 8)).toBe('123456789012.12345678');
    expect(formatAmount(new Decimal('1e30'), 2)).toBe('1000000000000000000000000000000.00');
  });

  it('refuses to round', () => {
    expect(() => formatAmount('0.000000001', 8)).toThrow(/more than 8 decimal places/);
    expect(() => formatAmount('0.5', 0)).toThrow(RangeError);
  });

  it('rejects non-finite values and bad scales', () => {
    expect(() => formatAmount(new Decimal(NaN), 8)).toThrow(RangeError);
    expect(() => formatAmount('1', -1)).toThrow(RangeError);
    expect(() => formatAmount('1', 1.5)).toThrow(RangeError);
  });

  it('does not print negative zero', () => {
    expect(formatAmount(new Decimal('-0'), 8)).toBe('0.00000000');
  });
});

describe('sumAmounts', () => {
  it('adds 1,000 × 0.00100001 exactly', () => {
    const amounts = Array.from({ length: 1000 }, () => parseAmount('0.00100001', BTC));
    expect(formatAmount(sumAmounts(amounts), 8)).toBe('1.00001000');
  });

  it('accepts strings and mixed Decimal clones', () => {
    expect(sumAmounts(['0.1', new Decimal('0.2'), new Money('0.3')]).toFixed()).toBe('0.6');
  });

  it('sums nothing to zero', () => {
    expect(sumAmounts([]).isZero()).toBe(true);
  });
});

describe('amountTransformer', () => {
  it('reads NUMERIC strings as Decimals', () => {
    const value = amountTransformer.from('0.00100000');
    expect(Decimal.isDecimal(value)).toBe(true);
    expect(value.toFixed()).toBe('0.001');
  });

  it('keeps null and undefined', () => {
    expect(amountTransformer.from(null)).toBeNull();
    expect(amountTransformer.to(null)).toBeNull();
    expect(amountTransformer.to(undefined)).toBeUndefined();
  });

  it('round-trips without loss', () => {
    for (const text of ['0.00000001', '999999999999.99999999', '1000.00000000', '0.00100001']) {
      const decimal = amountTransformer.from(text);
      expect(amountTransformer.to(decimal)).toBe(new Decimal(text).toFixed());
      expect(amountTransformer.from(amountTransformer.to(decimal)).eq(decimal)).toBe(true);
    }
  });

  it('writes plain notation', () => {
    expect(amountTransformer.to(new Decimal('1e-8'))).toBe('0.00000001');
    expect(amountTransformer.to('0.001')).toBe('0.001');
  });

  it('refuses JS numbers and values Postgres would round', () => {
    expect(() => amountTransformer.to(0.001)).toThrow(TypeError);
    expect(() => amountTransformer.to(new Decimal('0.000000001'))).toThrow(RangeError);
  });
});
