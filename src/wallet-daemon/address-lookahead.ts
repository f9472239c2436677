import type { Currency, CurrencyCode } from './currencies';

/** Where escrow addresses come from: address number `index` of a currency's chain. */
export interface AddressSource {
  addressAt(currency: Currency, index: number): string;
}

/** Addresses derived ahead of the last index handed out, per currency. */
const LOOKAHEAD = 256;
/** Derived per turn of the event loop, so a request never waits behind more than one turn (about 0.3 ms). */
const PER_TURN = 2;

/**
 * The next addresses of each currency's sequence, derived while the daemon waits on its
 * database instead of inside the requests that take them. Deriving one costs about 0.13
 * ms of CPU (libsecp256k1's point multiplication), and a create-batch of 32 spent about
 * 4 ms of its open transaction on it; the same work now runs between requests. An
 * address is a pure function of its index, so a derived-ahead one is exactly the one a
 * request would derive: the lookahead changes when the work is done, never its result.
 * Indexes the sequence skips (a rolled-back `nextval`, another daemon's) are dropped once
 * a higher one is taken.
 */
export class AddressLookahead implements AddressSource {
  /** Derived-ahead addresses by index, per currency, in ascending index order. */
  private readonly ready = new Map<CurrencyCode, Map<number, string>>();
  /** Highest index taken so far, per currency. */
  private readonly taken = new Map<CurrencyCode, number>();
  /** Next index to derive ahead, per currency. */
  private readonly next = new Map<CurrencyCode, number>();
  private readonly currencies = new Map<CurrencyCode, Currency>();
  private filling = false;

  constructor(private readonly source: AddressSource) {}

  addressAt(currency: Currency, index: number): string {
    const ready = this.ready.get(currency.code);
    const address = ready?.get(index) ?? this.source.addressAt(currency, index);
    this.took(currency, index, ready);
    return address;
  }

  /** `index` is taken: drop what lies at or below it and keep the next LOOKAHEAD coming. */
  private took(currency: Currency, index: number, ready: Map<number, string> | undefined): void {
    if (index <= (this.taken.get(currency.code) ?? -1)) {
      ready?.delete(index);
      return;
    }
    this.taken.set(currency.code, index);
    this.currencies.set(currency.code, currency);
    if (ready)
      for (const derived of ready.keys()) {
        if (derived > index) break;
        ready.delete(derived);
      }
    if ((this.next.get(currency.code) ?? 0) <= index) this.next.set(currency.code, index + 1);
    if (!this.filling) {
      this.filling = true;
      setImmediate(() => this.fill()).unref();
    }
  }

  /** Derives a few addresses ahead, then yields to the event loop; stops once every currency is LOOKAHEAD ahead. */
  private fill(): void {
    let derived = 0;
    for (const [code, currency] of this.currencies) {
      const taken = this.taken.get(code) as number;
      let next = this.next.get(code) as number;
      let ready = this.ready.get(code);
      if (!ready) this.ready.set(code, (ready = new Map<number, string>()));
      while (derived < PER_TURN && next <= taken + LOOKAHEAD) {
        ready.set(next, this.source.addressAt(currency, next));
        next++;
        derived++;
      }
      this.next.set(code, next);
      if (derived === PER_TURN) break;
    }
    if (derived === 0) this.filling = false;
    else setImmediate(() => this.fill()).unref();
  }
}
