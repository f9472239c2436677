import Decimal from 'decimal.js';
import type { EscrowRow } from './ledger';

/** Every currency of the daemon has 8 decimals (satoshi-like minor units). */
export const AMOUNT_SCALE = 8;

/** Largest value a NUMERIC(20,8) column holds. */
export const MAX_AMOUNT = new Decimal('999999999999.99999999');

/** Plain decimal notation with at most 8 written decimals: no sign, exponent, spaces or leading zeros. */
const DECIMAL_STRING = /^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$/;

/**
 * Parses a request amount (JSON string or number) into an exact Decimal, or null
 * when it is not a positive amount of at most 8 decimals that fits NUMERIC(20,8).
 * A JSON number is taken through its shortest round-trip spelling (`0.1` → "0.1"),
 * which is what the client wrote for any amount of ≤ 15 significant digits.
 */
export function parseAmount(input: unknown): Decimal | null {
  const amount = toDecimal(input);
  if (!amount || !amount.isFinite() || amount.lte(0)) return null;
  if (amount.decimalPlaces() > AMOUNT_SCALE || amount.gt(MAX_AMOUNT)) return null;
  return amount;
}

function toDecimal(input: unknown): Decimal | null {
  if (typeof input === 'number') {
    return Number.isFinite(input) ? new Decimal(input) : null;
  }
  if (typeof input === 'string' && input.length <= 40 && DECIMAL_STRING.test(input)) {
    return new Decimal(input);
  }
  return null;
}

/** Wire format of an amount: a decimal string with exactly 8 decimals. */
export function formatAmount(value: Decimal.Value): string {
  return new Decimal(value).toFixed(AMOUNT_SCALE);
}

/** What an escrow paid the payee and gave back to the refund address; null while held. */
export function settledAmounts(escrow: Pick<EscrowRow, 'state' | 'amount' | 'released_amount'>): {
  released_amount: string | null;
  refunded_amount: string | null;
} {
  if (escrow.state === 'held') return { released_amount: null, refunded_amount: null };
  const whole = new Decimal(escrow.amount);
  const released = escrow.state === 'refunded' ? new Decimal(0) : new Decimal(escrow.released_amount ?? whole);
  return { released_amount: formatAmount(released), refunded_amount: formatAmount(whole.minus(released)) };
}
