import { AddressFormat, BtcNetwork, normalizeAddress } from '../common/addresses';

export const CURRENCY_CODES = ['BTC', 'AITBC'] as const;
export type CurrencyCode = (typeof CURRENCY_CODES)[number];

/** What the daemon needs to know about a currency to hold and derive addresses. */
export interface Currency {
  code: CurrencyCode;
  format: AddressFormat;
  /** Address network (BTC only; AITBC has one network). */
  network: string;
  /** BIP44 coin type of the HD derivation path. */
  coinType: number;
}

export class CurrencyRegistry {
  private readonly byCode: Record<CurrencyCode, Currency>;

  constructor(btcNetwork: BtcNetwork) {
    this.byCode = {
      // SLIP-44: coin type 1 is "any testnet", which regtest shares.
      BTC: { code: 'BTC', format: 'btc', network: btcNetwork, coinType: btcNetwork === 'mainnet' ? 0 : 1 },
      AITBC: { code: 'AITBC', format: 'aitbc', network: 'aitbc', coinType: 7777 },
    };
  }

  /** The currency for a code, or undefined when the daemon does not hold it. */
  find(code: unknown): Currency | undefined {
    return typeof code === 'string' && (CURRENCY_CODES as readonly string[]).includes(code)
      ? this.byCode[code as CurrencyCode]
      : undefined;
  }

  /** The currency whose addresses `address` belongs to (the ledger key is per currency). */
  forAddress(address: string): Currency | undefined {
    return Object.values(this.byCode).find((currency) => this.normalize(currency, address) !== null);
  }

  /** Canonical spelling of `address` in `currency`, or null when invalid there. */
  normalize(currency: Currency, address: unknown): string | null {
    return normalizeAddress(address, currency.format, currency.network);
  }
}
