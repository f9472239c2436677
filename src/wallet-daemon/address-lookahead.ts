import type { Currency, CurrencyCode } from './currencies';
import { Db, nextAddressIndexes } from './ledger';

/** Where escrow addresses come from: address number `index` of a currency's chain. */
export interface AddressSource {
  addressAt(currency: Currency, index: number): string;
}

/** Fresh addresses: each at an index of its currency's sequence that no other caller ever gets. */
export interface AddressSupply {
  /** One fresh address per entry of `currencies`; `db` is the caller's transaction, used when none is ready. */
  take(db: Db, currencies: Currency[]): Promise<string[]>;
}

/** Indexes reserved from a currency's sequence at a time, and derived ahead. */
const BLOCK = 128;
/** Derived per turn of the event loop, so a request never waits behind more than one turn (about 0.3 ms). */
const PER_TURN = 2;

/**
 * The next indexes of each currency's sequence, reserved and their addresses derived
 * while the daemon waits on its database, instead of inside the transactions that take
 * them. Deriving one address costs about 0.13 ms of CPU (libsecp256k1's point
 * multiplication), and a create-batch of 32 spent about 4 ms of its open transaction on
 * it; taking its indexes was a round trip of its own. Both now happen between requests.
 *
 * `nextval` is never rolled back, so an index reserved outside the transaction that uses
 * it is exactly as unique as one taken inside: no two escrows, address requests or daemons
 * sharing the database ever get the same one. An address is a pure function of its index,
 * so a derived-ahead one is the one a request would derive. What changes is that a
 * stopped daemon leaves its reserved, unused indexes (at most 2 × BLOCK per currency)
 * unused for good, as a rolled-back create already did with its one; nothing counts on
 * the chain having no gaps (holds are found by the ledger, not by scanning the chain).
 *
 * A currency's first take, or one that finds the reserve short, takes its indexes inside
 * the caller's transaction as before; the reserve is refilled in the background, through
 * `reserve`, once it is down to BLOCK.
 */
export class AddressLookahead implements AddressSupply {
  private readonly chains = new Map<CurrencyCode, Chain>();
  private filling = false;

  constructor(
    private readonly source: AddressSource,
    /** Takes `count` indexes of the currency's sequence outside any request's transaction. */
    private readonly reserve: (currency: CurrencyCode, count: number) => Promise<number[]>,
  ) {}

  async take(db: Db, currencies: Currency[]): Promise<string[]> {
    const counts = new Map<CurrencyCode, number>();
    for (const { code } of currencies) counts.set(code, (counts.get(code) ?? 0) + 1);
    const indexes = new Map<CurrencyCode, number[]>();
    for (const [code, count] of counts) {
      const chain = this.chainOf(currencies.find((c) => c.code === code) as Currency);
      const taken = chain.reserved.splice(0, count);
      indexes.set(code, taken);
      if (taken.length < count) taken.push(...(await nextAddressIndexes(db, code, count - taken.length)));
      this.refill(chain);
    }
    return currencies.map((currency) => {
      const chain = this.chains.get(currency.code) as Chain;
      const index = (indexes.get(currency.code) as number[]).shift() as number;
      const address = chain.ready.get(index) ?? this.source.addressAt(currency, index);
      chain.ready.delete(index);
      return address;
    });
  }

  private chainOf(currency: Currency): Chain {
    let chain = this.chains.get(currency.code);
    if (!chain)
      this.chains.set(currency.code, (chain = { currency, reserved: [], ready: new Map(), refilling: false }));
    return chain;
  }

  /** Tops the reserve up by a BLOCK once it is down to one; a failed reservation is tried again at the next take. */
  private refill(chain: Chain): void {
    if (chain.refilling || chain.reserved.length > BLOCK) return;
    chain.refilling = true;
    this.reserve(chain.currency.code, BLOCK)
      .then((indexes) => {
        chain.reserved.push(...indexes);
        this.startFilling();
      })
      .catch(() => undefined) // the takes go on inside their transactions meanwhile
      .finally(() => (chain.refilling = false));
  }

  private startFilling(): void {
    if (this.filling) return;
    this.filling = true;
    setImmediate(() => this.fill()).unref();
  }

  /** Derives a few reserved addresses, then yields to the event loop; stops once every reserved index is derived. */
  private fill(): void {
    let derived = 0;
    for (const chain of this.chains.values()) {
      for (const index of chain.reserved) {
        if (derived === PER_TURN) break;
        if (chain.ready.has(index)) continue;
        chain.ready.set(index, this.source.addressAt(chain.currency, index));
        derived++;
      }
    }
    if (derived === 0) this.filling = false;
    else setImmediate(() => this.fill()).unref();
  }
}

interface Chain {
  currency: Currency;
  /** Indexes reserved from the sequence and not yet taken, in the order reserved. */
  reserved: number[];
  /** Addresses of reserved indexes, derived ahead. */
  ready: Map<number, string>;
  refilling: boolean;
}
