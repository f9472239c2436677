import { AddressLookahead, AddressSource } from './address-lookahead';
import { Currency, CurrencyCode, CurrencyRegistry } from './currencies';
import { HdWallet } from './hd-wallet';
import type { Db } from './ledger';

const currencies = new CurrencyRegistry('regtest');
const BTC = currencies.find('BTC') as Currency;
const AITBC = currencies.find('AITBC') as Currency;

/** A source that records which indexes it derived. */
function countingSource(): AddressSource & { derived: string[] } {
  const derived: string[] = [];
  return {
    derived,
    addressAt: (currency, index) => {
      derived.push(`${currency.code}:${index}`);
      return `${currency.code}-address-${index}`;
    },
  };
}

/**
 * The two ways indexes leave a currency's sequence, as the database hands them out: one
 * counter per currency, shared by the in-transaction `nextval` (`db`) and the background
 * reservation (`reserve`), which can be made to fail or to wait.
 */
function sequences() {
  const next = new Map<CurrencyCode, number>();
  const take = (currency: CurrencyCode, count: number) => {
    const first = next.get(currency) ?? 0;
    next.set(currency, first + count);
    return Array.from({ length: count }, (_, i) => first + i);
  };
  const inTransaction: string[] = [];
  const db: Db = {
    query: ((text: string, values: unknown[]) => {
      const currency: CurrencyCode = text.includes('hd_index_btc') ? 'BTC' : 'AITBC';
      inTransaction.push(`${currency}:${String(values[0])}`);
      return Promise.resolve({ rows: take(currency, Number(values[0])).map((i) => ({ index: String(i) })) });
    }) as unknown as Db['query'],
  };
  const control = { failing: false, reserved: [] as string[] };
  const reserve = (currency: CurrencyCode, count: number) => {
    if (control.failing) return Promise.reject(new Error('database unavailable'));
    control.reserved.push(`${currency}:${count}`);
    return Promise.resolve(take(currency, count));
  };
  return { db, reserve, inTransaction, control };
}

/** Lets the background reservation and derivation run until nothing is left to do. */
async function settle(source: { derived: string[] }): Promise<void> {
  for (let seen = -1; seen !== source.derived.length;) {
    seen = source.derived.length;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('AddressLookahead', () => {
  it('answers exactly what the HD wallet derives at the indexes handed out, reserved ahead or not', async () => {
    const wallet = new HdWallet(Buffer.alloc(32, 7));
    const { db, reserve } = sequences();
    const lookahead = new AddressLookahead(wallet, reserve);
    const first = await lookahead.take(db, [BTC, BTC, AITBC]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const later = await lookahead.take(db, [BTC, AITBC, BTC]);
    expect(first).toEqual([wallet.addressAt(BTC, 0), wallet.addressAt(BTC, 1), wallet.addressAt(AITBC, 0)]);
    // Indexes 2… of each currency went to the reserve, in order.
    expect(later).toEqual([wallet.addressAt(BTC, 2), wallet.addressAt(AITBC, 1), wallet.addressAt(BTC, 3)]);
  });

  it('takes a first index in the transaction, then from the reserve, its addresses derived between requests', async () => {
    const source = countingSource();
    const { db, reserve, inTransaction, control } = sequences();
    const lookahead = new AddressLookahead(source, reserve);
    expect(await lookahead.take(db, [BTC])).toEqual(['BTC-address-0']);
    expect(inTransaction).toEqual(['BTC:1']);
    await settle(source);
    expect(control.reserved).toEqual(['BTC:128']);
    expect(source.derived).toContain('BTC:128');
    expect(source.derived).not.toContain('BTC:129');

    const before = source.derived.length;
    expect(await lookahead.take(db, [BTC, BTC, BTC])).toEqual(['BTC-address-1', 'BTC-address-2', 'BTC-address-3']);
    expect(inTransaction).toEqual(['BTC:1']);
    expect(source.derived.slice(before).filter((d) => ['BTC:1', 'BTC:2', 'BTC:3'].includes(d))).toEqual([]);
  });

  it('never hands out one index twice, however takes interleave with the reservations', async () => {
    const source = countingSource();
    const { db, reserve } = sequences();
    const lookahead = new AddressLookahead(source, reserve);
    const taken: string[] = [];
    for (let round = 0; round < 40; round++) {
      const asks = await Promise.all([
        lookahead.take(db, Array<Currency>(7).fill(BTC)),
        lookahead.take(db, [AITBC, BTC, AITBC]),
      ]);
      taken.push(...asks.flat());
      if (round % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(new Set(taken).size).toBe(taken.length);
    expect(taken.filter((a) => a.startsWith('BTC')).length).toBe(40 * 8);
  });

  it('keeps each currency apart and reserves none for a currency never taken', async () => {
    const source = countingSource();
    const { db, reserve, control } = sequences();
    const lookahead = new AddressLookahead(source, reserve);
    await lookahead.take(db, [AITBC]);
    await settle(source);
    expect(control.reserved).toEqual(['AITBC:128']);
    expect(source.derived.every((d) => d.startsWith('AITBC:'))).toBe(true);
    expect(await lookahead.take(db, [BTC])).toEqual(['BTC-address-0']);
  });

  it('goes on taking indexes in the transaction while the reservation fails, and reserves once it works', async () => {
    const source = countingSource();
    const { db, reserve, inTransaction, control } = sequences();
    const lookahead = new AddressLookahead(source, reserve);
    control.failing = true;
    expect(await lookahead.take(db, [BTC, BTC])).toEqual(['BTC-address-0', 'BTC-address-1']);
    await settle(source);
    expect(await lookahead.take(db, [BTC])).toEqual(['BTC-address-2']);
    expect(inTransaction).toEqual(['BTC:2', 'BTC:1']);

    control.failing = false;
    expect(await lookahead.take(db, [BTC])).toEqual(['BTC-address-3']);
    await settle(source);
    expect(await lookahead.take(db, [BTC])).toEqual(['BTC-address-4']);
    expect(inTransaction).toEqual(['BTC:2', 'BTC:1', 'BTC:1']);
    // The first block arrived and a take left it at BLOCK or less: the second is on its way.
    expect(control.reserved).toEqual(['BTC:128', 'BTC:128']);
  });
});
