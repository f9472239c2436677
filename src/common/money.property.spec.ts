import fc from 'fast-check';
import { parseCurrencies } from './currencies';
import { AmountError, formatAmount, Money, parseAmount } from './money';

const BTC = parseCurrencies(undefined).get('BTC')!;

/** Every amount a BTC payment may carry, as canonical text: 0.00000546 … 1000, 8 decimals at most. */
const satoshis = fc.bigInt({ min: 546n, max: 100_000_000_000n });
const asText = (sats: bigint) => {
  const whole = sats / 100_000_000n;
  const frac = (sats % 100_000_000n).toString().padStart(8, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : `${whole}`;
};

describe('money parser properties', () => {
  it('round-trips every valid amount exactly: parse → format → parse', () => {
    fc.assert(
      fc.property(satoshis, (sats) => {
        const text = asText(sats);
        const formatted = formatAmount(parseAmount(text, BTC), 8);
        expect(new Money(formatted).eq(new Money(text))).toBe(true);
        expect(formatAmount(parseAmount(formatted, BTC), 8)).toBe(formatted);
        // Exactly the satoshis we started from: no float ever touched the value.
        expect(BigInt(formatted.replace('.', ''))).toBe(sats);
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects every string outside the grammar with an AmountError, never anything else', () => {
    const outside = fc.oneof(
      fc.string(),
      fc.stringMatching(/^[-+ ]?[0-9]{0,4}(\.[0-9]{0,12})?([eE][-+]?[0-9]{1,3})?$/),
      fc.constantFrom(
        'NaN',
        'Infinity',
        '-Infinity',
        '0x10',
        '1e-3',
        '1E3',
        '.5',
        '5.',
        '01',
        '+1',
        ' 1',
        '1 ',
        '1,5',
        '٣',
      ),
    );
    fc.assert(
      fc.property(outside, (text) => {
        fc.pre(!/^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$/.test(text)); // only strings outside the accepted grammar
        expect(() => parseAmount(text, BTC)).toThrow(AmountError);
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts a grammatical amount exactly when it is within the currency limits', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 14n }), (sats) => {
        const text = asText(sats);
        const value = new Money(text);
        const inRange = value.gte(BTC.min) && value.lte(BTC.max);
        let accepted = true;
        try {
          parseAmount(text, BTC);
        } catch (error) {
          expect(error).toBeInstanceOf(AmountError);
          accepted = false;
        }
        expect(accepted).toBe(inRange);
      }),
      { numRuns: 2000 },
    );
  });

  it('never accepts a non-string, non-number input', () => {
    fc.assert(
      fc.property(
        fc.anything().filter((v) => typeof v !== 'string' && typeof v !== 'number'),
        (value) => {
          expect(() => parseAmount(value, BTC)).toThrow(AmountError);
        },
      ),
    );
  });
});
