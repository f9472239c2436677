import { formatAmount, parseAmount } from './amounts';

describe('parseAmount', () => {
  it.each([
    ['0.001', '0.00100000'],
    ['1', '1.00000000'],
    ['0.00000001', '0.00000001'],
    ['12.34567890', '12.34567890'],
    ['999999999999.99999999', '999999999999.99999999'],
  ])('accepts the string %s', (input, expected) => {
    expect(formatAmount(parseAmount(input)!)).toBe(expected);
  });

  it.each([
    [0.001, '0.00100000'],
    [0.1, '0.10000000'],
    [1e-8, '0.00000001'],
    [21000000, '21000000.00000000'],
  ])('accepts the JSON number %p exactly', (input, expected) => {
    expect(formatAmount(parseAmount(input)!)).toBe(expected);
  });

  it('keeps exact decimal arithmetic (no float drift)', () => {
    expect(parseAmount('0.1')!.plus(parseAmount('0.2')!).toFixed(8)).toBe('0.30000000');
  });

  it.each([
    ['0'],
    ['0.00000000'],
    ['-1'],
    ['0.000000001'],
    ['1.000000000'],
    ['1e-3'],
    ['1E2'],
    [' 1'],
    ['1 '],
    ['+1'],
    ['01'],
    ['.5'],
    ['5.'],
    ['1,5'],
    ['NaN'],
    ['Infinity'],
    ['0x10'],
    ['1000000000000'],
    [''],
  ])('rejects the string %j', (input) => {
    expect(parseAmount(input)).toBeNull();
  });

  it.each([[0], [-0.5], [0.000000001], [NaN], [Infinity], [1e12]])('rejects the number %p', (input) => {
    expect(parseAmount(input)).toBeNull();
  });

  it.each([[null], [undefined], [true], [{}], [['1']]])('rejects %p', (input) => {
    expect(parseAmount(input)).toBeNull();
  });
});

describe('formatAmount', () => {
  it('always prints 8 decimals', () => {
    expect(formatAmount('5')).toBe('5.00000000');
    expect(formatAmount('-0.5')).toBe('-0.50000000');
    expect(formatAmount(0)).toBe('0.00000000');
  });
});
