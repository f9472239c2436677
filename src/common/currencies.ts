import type { Decimal } from 'decimal.js';
import { Money } from './money';

export type AddressFormat = 'btc' | 'aitbc';

export interface CurrencyConfig {
  /** Upper-case code as used on the wire (`BTC`). */
  code: string;
  /** Decimal places accepted and shown (0..8). */
  scale: number;
  /** Smallest accepted payment (the operator's threshold, e.g. BTC dust). */
  min: Decimal;
  /** Largest accepted payment. */
  max: Decimal;
  addressFormat: AddressFormat;
  network: string;
}

export const DEFAULT_CURRENCIES = 'BTC:8:0.00000546:1000:btc:regtest,AITBC:8:0.00000001:1000000000:aitbc:mainnet';

const ENV_NAME = 'CURRENCIES';
const CODE = /^[A-Z][A-Z0-9]{1,9}$/;
const SCALE = /^[0-8]$/;
const DECIMAL = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
const NETWORK = /^[a-z][a-z0-9-]*$/;
const BTC_NETWORKS = ['mainnet', 'testnet', 'regtest'];
// NUMERIC(20,8) leaves 12 integer digits.
const MAX_LIMIT = new Money(10).pow(12);
const FORMAT_HINT = 'expected CODE:scale:min:max:format:network';

/**
 * Parses `CURRENCIES` (`CODE:scale:min:max:format:network`, comma-separated).
 * Unset or blank means {@link DEFAULT_CURRENCIES}. Throws an Error naming the
 * variable and the offending entry.
 */
export function parseCurrencies(raw: string | undefined): Map<string, CurrencyConfig> {
  const source = raw === undefined || raw.trim() === '' ? DEFAULT_CURRENCIES : raw;
  const currencies = new Map<string, CurrencyConfig>();

  for (const rawEntry of source.split(',')) {
    const entry = rawEntry.trim();
    const invalid = (problem: string) => new Error(`${ENV_NAME}: invalid entry "${entry}": ${problem}`);

    const parts = entry.split(':');
    if (parts.length !== 6) throw invalid(FORMAT_HINT);
    const [code, scaleText, minText, maxText, format, network] = parts;

    if (!CODE.test(code)) throw invalid(`code must match ${CODE.source}`);
    if (currencies.has(code)) throw invalid(`duplicate currency ${code}`);
    if (!SCALE.test(scaleText)) throw invalid('scale must be an integer from 0 to 8');
    const scale = Number(scaleText);

    const limit = (name: string, text: string): Decimal => {
      if (!DECIMAL.test(text)) throw invalid(`${name} must be a plain decimal, got "${text}"`);
      const value = new Money(text);
      if (value.decimalPlaces() > scale) {
        throw invalid(`${name} ${text} has more than ${scale} decimal places`);
      }
      return value;
    };
    const min = limit('min', minText);
    const max = limit('max', maxText);
    if (!min.gt(0)) throw invalid('min must be greater than zero');
    if (max.lt(min)) throw invalid('max must be at least min');
    if (!max.lt(MAX_LIMIT)) throw invalid('max must be below 10^12 (NUMERIC(20,8))');

    if (format !== 'btc' && format !== 'aitbc') throw invalid('format must be btc or aitbc');
    if (format === 'btc' && !BTC_NETWORKS.includes(network)) {
      throw invalid(`btc network must be one of ${BTC_NETWORKS.join(', ')}`);
    }
    if (!NETWORK.test(network)) throw invalid(`network must match ${NETWORK.source}`);

    currencies.set(code, { code, scale, min, max, addressFormat: format, network });
  }
  return currencies;
}
