import { Money } from '../common/money';
import type { ProviderConfig, RoutingConfig } from './provider-config';
import {
  byPriority,
  candidates,
  failoverCandidates,
  isEligible,
  matches,
  ProviderStanding,
  RoutedPayment,
  WeightedRoundRobin,
} from './routing';

const provider = (id: string, over: Partial<ProviderConfig> = {}): ProviderConfig => ({
  id,
  url: `http://${id}.test`,
  token: 't',
  currencies: ['BTC', 'AITBC'],
  priority: 100,
  weight: 1,
  maxAmount: new Map(),
  ...over,
});
const pay = (amount: string, currency = 'BTC', clientId = 'client-1'): RoutedPayment => ({
  amount: new Money(amount),
  currency,
  clientId,
});
const healthy: ProviderStanding = { draining: false, open: false };
const allHealthy = () => healthy;
const ids = (list: readonly ProviderConfig[]) => list.map((p) => p.id);

describe('isEligible', () => {
  const capped = provider('capped', { currencies: ['BTC'], maxAmount: new Map([['BTC', new Money('10')]]) });
  it.each([
    ['serves the currency, under its max', pay('9.99999999'), healthy, true],
    ['exactly its max (exact compare)', pay('10'), healthy, true],
    ['one satoshi over its max', pay('10.00000001'), healthy, false],
    ['a currency it does not serve', pay('1', 'AITBC'), healthy, false],
    ['draining', pay('1'), { draining: true, open: false }, false],
    ['circuit open', pay('1'), { draining: false, open: true }, false],
  ])('%s → %s', (_name, payment, standing, eligible) => {
    expect(isEligible(capped, standing, payment)).toBe(eligible);
  });

  it('no max for a currency: the currency limits alone apply', () => {
    expect(isEligible(provider('a'), healthy, pay('999999'))).toBe(true);
  });
});

describe('matches (rule conditions)', () => {
  it.each([
    [{}, pay('1'), true],
    [{ currency: 'BTC' }, pay('1'), true],
    [{ currency: 'AITBC' }, pay('1'), false],
    [{ clientId: 'client-1' }, pay('1'), true],
    [{ clientId: 'client-2' }, pay('1'), false],
    [{ amountGte: new Money('1') }, pay('1'), true],
    [{ amountGte: new Money('1') }, pay('0.99999999'), false],
    [{ amountLt: new Money('1') }, pay('1'), false],
    [{ amountLt: new Money('1') }, pay('0.99999999'), true],
    [{ currency: 'BTC', amountGte: new Money('1'), amountLt: new Money('2') }, pay('1.5'), true],
    [{ currency: 'BTC', amountGte: new Money('1'), amountLt: new Money('2') }, pay('1.5', 'AITBC'), false],
  ])('%o with %o → %s', (when, payment, expected) => {
    expect(matches(when, payment)).toBe(expected);
  });
});

describe('byPriority', () => {
  it('lower priority first; ties keep the configured order', () => {
    const list = [provider('a', { priority: 5 }), provider('b', { priority: 1 }), provider('c', { priority: 5 })];
    expect(ids(byPriority(list))).toEqual(['b', 'a', 'c']);
  });
});

describe('WeightedRoundRobin', () => {
  it('over 1,000 picks, each provider gets its weight share (exact per full cycle, ±5 % asked)', () => {
    const split = new WeightedRoundRobin();
    const list = [provider('a', { weight: 5 }), provider('b', { weight: 3 }), provider('c', { weight: 2 })];
    const counts = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const id = split.pick(list)!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({ a: 500, b: 300, c: 200 });
  });

  it('interleaves rather than bursting: a 1:1 split alternates', () => {
    const split = new WeightedRoundRobin();
    const list = [provider('a'), provider('b')];
    expect(Array.from({ length: 6 }, () => split.pick(list)!.id)).toEqual(['a', 'b', 'a', 'b', 'a', 'b']);
  });

  it('weight 0 is never picked; nothing weighted: undefined', () => {
    const split = new WeightedRoundRobin();
    const list = [provider('a', { weight: 0 }), provider('b', { weight: 2 })];
    for (let i = 0; i < 10; i++) expect(split.pick(list)!.id).toBe('b');
    expect(split.pick([provider('z', { weight: 0 })])).toBeUndefined();
  });

  it('when a candidate leaves (drained, open), the rest share by their weights', () => {
    const split = new WeightedRoundRobin();
    const a = provider('a', { weight: 1 });
    const b = provider('b', { weight: 1 });
    const c = provider('c', { weight: 2 });
    for (let i = 0; i < 7; i++) split.pick([a, b, c]);
    const counts = { a: 0, c: 0 } as Record<string, number>;
    for (let i = 0; i < 300; i++) counts[split.pick([a, c])!.id]++;
    expect(counts.a).toBeGreaterThanOrEqual(99);
    expect(counts.a).toBeLessThanOrEqual(101);
  });
});

describe('candidates', () => {
  const a = provider('a', { priority: 1, weight: 3 });
  const b = provider('b', {
    priority: 2,
    weight: 1,
    currencies: ['BTC'],
    maxAmount: new Map([['BTC', new Money('5')]]),
  });
  const c = provider('c', { priority: 3, weight: 1 });
  const all = [a, b, c];
  const priority: RoutingConfig = { rules: [], default: 'priority' };
  const split: RoutingConfig = { rules: [], default: 'volume_split' };
  const standing =
    (down: string[] = [], draining: string[] = []) =>
    (id: string) => ({
      open: down.includes(id),
      draining: draining.includes(id),
    });

  it.each([
    ['priority: all healthy', priority, standing(), pay('1'), ['a', 'b', 'c']],
    ['priority: the first is open', priority, standing(['a']), pay('1'), ['b', 'c']],
    ['priority: the first is draining', priority, standing([], ['a']), pay('1'), ['b', 'c']],
    ['priority: over b max_amount', priority, standing(['a']), pay('5.00000001'), ['c']],
    ['priority: AITBC is not served by b', priority, standing(), pay('1', 'AITBC'), ['a', 'c']],
    ['priority: none eligible', priority, standing(['a', 'c']), pay('1', 'AITBC'), []],
  ])('%s', (_name, routing, stand, payment, expected) => {
    expect(ids(candidates(routing, all, stand, payment, new WeightedRoundRobin()))).toEqual(expected);
  });

  it('volume_split: the weighted pick first, the rest by priority (the failover order)', () => {
    const rr = new WeightedRoundRobin();
    const firsts = Array.from({ length: 5 }, () => candidates(split, all, standing(), pay('1'), rr));
    expect(firsts.map((list) => list[0].id).sort()).toEqual(['a', 'a', 'a', 'b', 'c']);
    const bFirst = firsts.find((list) => list[0].id === 'b')!;
    expect(ids(bFirst)).toEqual(['b', 'a', 'c']);
  });

  it('rules: the first matching rule decides, its list in order, eligible ones only, no fallback', () => {
    const routing: RoutingConfig = {
      rules: [
        { when: { currency: 'BTC', amountGte: new Money('5') }, use: ['c', 'a'] },
        { when: { currency: 'BTC' }, use: ['b'] },
        { when: { clientId: 'vip' }, use: ['a'] },
      ],
      default: 'priority',
    };
    const rr = new WeightedRoundRobin();
    expect(ids(candidates(routing, all, standing(), pay('5'), rr))).toEqual(['c', 'a']);
    expect(ids(candidates(routing, all, standing(['c']), pay('5'), rr))).toEqual(['a']);
    expect(ids(candidates(routing, all, standing(), pay('4.99999999'), rr))).toEqual(['b']);
    // The matching rule's provider is draining: nothing, even though others could hold it.
    expect(ids(candidates(routing, all, standing([], ['b']), pay('1'), rr))).toEqual([]);
    expect(ids(candidates(routing, all, standing(), pay('1', 'AITBC', 'vip'), rr))).toEqual(['a']);
    // No rule matches: the default.
    expect(ids(candidates(routing, all, standing(), pay('1', 'AITBC'), rr))).toEqual(['a', 'c']);
  });

  it('failoverCandidates: priority order (or the rule list) and never moves the split', () => {
    const rr = new WeightedRoundRobin();
    expect(ids(failoverCandidates(split, all, standing(['a']), pay('1')))).toEqual(['b', 'c']);
    // The split still starts where it would have: a first (weight 3 of 5).
    expect(candidates(split, all, standing(), pay('1'), rr)[0].id).toBe('a');
    const routing: RoutingConfig = { rules: [{ when: {}, use: ['c', 'b'] }], default: 'volume_split' };
    expect(ids(failoverCandidates(routing, all, allHealthy, pay('1')))).toEqual(['c', 'b']);
  });
});
