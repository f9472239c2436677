import { Decimal } from 'decimal.js';
import type { ValueTransformer } from 'typeorm';
import type { CurrencyConfig } from './currencies';

/**
 * Decimal constructor for money. A private clone so nothing depends on (or can break)
 * the global Decimal configuration: 40 significant digits is far more than
 * NUMERIC(20,8) needs, ROUND_DOWN never invents value, and the exponent limits keep
 * toString() in plain notation.
 */
export const Money = Decimal.clone({
  precision: 40,
  rounding: Decimal.ROUND_DOWN,
  toExpNeg: -40,
  toExpPos: 40,
});

/** Scale of the `NUMERIC(20,8)` amount columns. */
export const DB_AMOUNT_SCALE = 8;

export type AmountErrorReason =
  'not_a_decimal' | 'too_many_decimals' | 'not_positive' | 'below_minimum' | 'above_maximum';

/** A rejected input amount; `reason` is stable and meant for error details. */
export class AmountError extends Error {
  constructor(
    readonly reason: AmountErrorReason,
    message: string,
    readonly currency?: string,
  ) {
    super(message);
    this.name = 'AmountError';
  }
}

/** Plain decimal: no sign, exponent, whitespace, leading zeros, or bare point. */
const DECIMAL_GRAMMAR = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
const NEGATIVE_DECIMAL = /^-(0|[1-9][0-9]*)(\.[0-9]+)?$/;

// Every decimal with at most 15 significant digits survives a round trip through a
// double (DBL_DIG); with 16–17 digits String(n) may not be what the client sent.
const MAX_EXACT_NUMBER_DIGITS = 15;

/**
 * Parses a request amount (JSON string or JSON number) for `currency`.
 *
 * Decimal places are counted as written: `"0.001000000"` has 9 decimals and is
 * rejected for a scale-8 currency even though the trailing zeros add no value,
 * because a client sending more digits than the currency has is usually confused
 * about the unit, and "exactly what you sent, or 400" is the simpler contract.
 */
export function parseAmount(input: unknown, currency: CurrencyConfig): Decimal {
  const text = amountText(input, currency.code);

  if (NEGATIVE_DECIMAL.test(text)) {
    throw new AmountError('not_positive', `amount must be greater than zero`, currency.code);
  }
  if (!DECIMAL_GRAMMAR.test(text)) {
    throw new AmountError(
      'not_a_decimal',
      `amount must be a plain decimal such as "0.001" (no sign, exponent or spaces)`,
      currency.code,
    );
  }

  const decimals = text.includes('.') ? text.length - text.indexOf('.') - 1 : 0;
  if (decimals > currency.scale) {
    throw new AmountError(
      'too_many_decimals',
      `amount has ${decimals} decimal places; ${currency.code} allows at most ${currency.scale}`,
      currency.code,
    );
  }

  const amount = new Money(text);
  if (amount.isZero()) {
    throw new AmountError('not_positive', `amount must be greater than zero`, currency.code);
  }
  if (amount.lt(currency.min)) {
    throw new AmountError(
      'below_minimum',
      `amount is below the ${currency.code} minimum of ${formatLimit(currency.min, currency)}`,
      currency.code,
    );
  }
  if (amount.gt(currency.max)) {
    throw new AmountError(
      'above_maximum',
      `amount is above the ${currency.code} maximum of ${formatLimit(currency.max, currency)}`,
      currency.code,
    );
  }
  return amount;
}

function formatLimit(value: Decimal, currency: CurrencyConfig): string {
  return formatAmount(value, currency.scale);
}

/** The textual form of a JSON string or number input; everything else is rejected. */
function amountText(input: unknown, code: string): string {
  if (typeof input === 'string') return input;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) {
      throw new AmountError('not_a_decimal', `amount must be a finite decimal`, code);
    }
    // Numbers go through the string grammar, so 1e-7 (String → "1e-7") is rejected.
    const text = String(input);
    if (significantDigits(text) > MAX_EXACT_NUMBER_DIGITS) {
      throw new AmountError(
        'not_a_decimal',
        `amount has more digits than a JSON number carries exactly; send it as a string`,
        code,
      );
    }
    return text;
  }
  throw new AmountError('not_a_decimal', `amount must be a decimal string or number`, code);
}

function significantDigits(text: string): number {
  const digits = text.replace(/e.*$/i, '').replace(/[^0-9]/g, '');
  return digits.replace(/^0+/, '').length;
}

/**
 * Fixed-point string with exactly `scale` decimals (`"0.00100000"`), never in
 * exponent notation. Throws rather than rounding if the value has more decimals.
 */
export function formatAmount(amount: Decimal | string, scale: number): string {
  if (!Number.isInteger(scale) || scale < 0) {
    throw new RangeError(`formatAmount: scale must be a non-negative integer, got ${scale}`);
  }
  const value = toMoney(amount);
  if (value.decimalPlaces() > scale) {
    throw new RangeError(`formatAmount: ${value.toFixed()} has more than ${scale} decimal places`);
  }
  // abs() of zero avoids "-0.00000000".
  return (value.isZero() ? value.abs() : value).toFixed(scale);
}

/** Exact sum; an empty list sums to zero. */
export function sumAmounts(amounts: readonly (Decimal | string)[]): Decimal {
  return amounts.reduce<Decimal>((sum, amount) => sum.plus(toMoney(amount)), new Money(0));
}

/** A finite Money value from a Decimal (of any clone) or a decimal string. */
function toMoney(amount: Decimal | string): Decimal {
  const value = Decimal.isDecimal(amount) ? new Money(amount) : new Money(amount);
  if (!value.isFinite()) {
    throw new RangeError(`amount must be finite, got ${value.toString()}`);
  }
  return value;
}

/**
 * TypeORM transformer for `NUMERIC(20,8)` columns: the pg driver returns strings,
 * entities hold Decimals, and a JS number is refused on the way in.
 */
export const amountTransformer: ValueTransformer = {
  from(value: string | null | undefined): Decimal | null | undefined {
    return value === null || value === undefined ? value : new Money(value);
  },
  to(value: unknown): unknown {
    if (value === null || value === undefined) return value;
    if (typeof value === 'number') {
      throw new TypeError('amountTransformer: refusing a JS number for a money column');
    }
    if (typeof value === 'string' || Decimal.isDecimal(value)) {
      const decimal = toMoney(value);
      // Postgres would round extra decimals silently; refuse instead.
      if (decimal.decimalPlaces() > DB_AMOUNT_SCALE) {
        throw new RangeError(`amountTransformer: ${decimal.toFixed()} has more than ${DB_AMOUNT_SCALE} decimal places`);
      }
      return decimal.toFixed();
    }
    // Anything else (e.g. a FindOperator) is TypeORM's business.
    return value;
  },
};
