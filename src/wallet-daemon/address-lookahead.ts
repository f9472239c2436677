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
  /** Per currency taken so far: the highest index taken, the next to derive ahead, and the derived ones in index order. */
  private readonly chains = new Map<CurrencyCode, Chain>();
  private filling = false;

  constructor(private readonly source: AddressSource) {}

  addressAt(currency: Currency, index: number): string {
    const chain = this.chains.get(currency.code);
    const address = chain?.ready.get(index) ?? this.source.addressAt(currency, index);
    if (chain) this.took(chain, index);
    else this.chains.set(currency.code, { currency, taken: index, next: index + 1, ready: new Map() });
    if (!this.filling) {
      this.filling = true;
      setImmediate(() => this.fill()).unref();
    }
    return address;
  }

  /** `index` is taken: drop what lies at or below it; the fill keeps the next LOOKAHEAD coming. */
  private took(chain: Chain, index: number): void {
    if (index <= chain.taken) {
      chain.ready.delete(index);
      return;
    }
    chain.taken = index;
    for (const derived of chain.ready.keys()) {
      if (derived > index) break;
      chain.ready.delete(derived);
    }
    chain.next = Math.max(chain.next, index + 1);
  }

  /** Derives a few addresses ahead, then yields to the event loop; stops once every currency is LOOKAHEAD ahead. */
  private fill(): void {
    let derived = 0;
    for (const chain of this.chains.values()) {
      for (; derived < PER_TURN && chain.next <= chain.taken + LOOKAHEAD; chain.next++, derived++)
        chain.ready.set(chain.next, this.source.addressAt(chain.currency, chain.next));
      if (derived === PER_TURN) break;
    }
    if (derived === 0) this.filling = false;
    else setImmediate(() => this.fill()).unref();
  }
}

interface Chain {
  currency: Currency;
  taken: number;
  next: number;
  ready: Map<number, string>;
}
