import { AddressLookahead, AddressSource } from './address-lookahead';
import { Currency, CurrencyRegistry } from './currencies';
import { HdWallet } from './hd-wallet';

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

/** Lets the lookahead's event-loop turns run until it has nothing left to derive. */
async function settle(source: { derived: string[] }): Promise<void> {
  for (let seen = -1; seen !== source.derived.length;) {
    seen = source.derived.length;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('AddressLookahead', () => {
  it('answers exactly what the HD wallet derives, whether derived ahead or not', async () => {
    const wallet = new HdWallet(Buffer.alloc(32, 7));
    const lookahead = new AddressLookahead(wallet);
    const indexes = [0, 1, 2, 5, 300, 301, 7];
    const first = indexes.map((i) => lookahead.addressAt(BTC, i));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const later = [302, 303, 400, 350].map((i) => lookahead.addressAt(BTC, i));
    expect(first).toEqual(indexes.map((i) => wallet.addressAt(BTC, i)));
    expect(later).toEqual([302, 303, 400, 350].map((i) => wallet.addressAt(BTC, i)));
  });

  it('derives the next indexes between requests, so a later request takes them without deriving', async () => {
    const source = countingSource();
    const lookahead = new AddressLookahead(source);
    expect(lookahead.addressAt(BTC, 10)).toBe('BTC-address-10');
    await settle(source);
    expect(source.derived).toContain('BTC:11');
    expect(source.derived).toContain('BTC:266');
    expect(source.derived).not.toContain('BTC:267');

    const before = source.derived.length;
    expect([11, 12, 40].map((i) => lookahead.addressAt(BTC, i))).toEqual([
      'BTC-address-11',
      'BTC-address-12',
      'BTC-address-40',
    ]);
    expect(source.derived.slice(before).filter((d) => ['BTC:11', 'BTC:12', 'BTC:40'].includes(d))).toEqual([]);
  });

  it('keeps each currency apart and derives none ahead for a currency never taken', async () => {
    const source = countingSource();
    const lookahead = new AddressLookahead(source);
    lookahead.addressAt(AITBC, 3);
    await settle(source);
    expect(source.derived.every((d) => d.startsWith('AITBC:'))).toBe(true);
    expect(lookahead.addressAt(BTC, 4)).toBe('BTC-address-4');
    expect(source.derived).toContain('BTC:4');
  });

  it('drops what lies at or below the highest index taken (skipped indexes are not kept)', async () => {
    const source = countingSource();
    const lookahead = new AddressLookahead(source);
    lookahead.addressAt(BTC, 0);
    await settle(source);
    lookahead.addressAt(BTC, 200); // 1…199 skipped, as by rolled-back nextvals
    await settle(source);
    const before = source.derived.length;
    // Index 150 was derived ahead, then dropped as skipped: asked for anyway, it is derived again.
    expect(lookahead.addressAt(BTC, 150)).toBe('BTC-address-150');
    expect(source.derived.slice(before)).toContain('BTC:150');
  });
});
