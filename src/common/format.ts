import type { AppConfig } from '../config/app-config';
import { formatAmount } from './money';

/** ISO-8601 UTC, or null. A timestamp that came as text (from JSON built in SQL) is parsed first. */
export const iso = (d: Date | string | null | undefined): string | null =>
  d ? (d instanceof Date ? d : new Date(d)).toISOString() : null;

/** An amount as it goes out: a decimal string at the currency's full scale. */
export function amountOut(config: AppConfig, amount: string | null, currency: string | null): string | null {
  if (amount === null || currency === null) return null;
  return formatAmount(amount, config.currencies.get(currency)?.scale ?? 8);
}
