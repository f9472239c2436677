import type { Decimal } from 'decimal.js';
import type { ProviderConfig, RoutingCondition, RoutingConfig } from './provider-config';

/**
 * Which provider holds a new payment: pure rules over the configuration and each
 * provider's current standing (README "Providers and routing"). The services call these;
 * nothing here reads the database or the clock.
 */

/** What routing knows about a payment: its currency, exact amount and owner. */
export interface RoutedPayment {
  currency: string;
  amount: Decimal;
  clientId: string;
}

/** A provider's standing at the moment of routing. */
export interface ProviderStanding {
  draining: boolean;
  /** The circuit is open (within its cooldown): no call would be sent. */
  open: boolean;
}

/**
 * Eligible: serves the currency, the amount is within its `max_amount` (exact compare),
 * not draining, circuit not open. A half-open circuit is eligible: its probe is the call.
 */
export function isEligible(provider: ProviderConfig, standing: ProviderStanding, payment: RoutedPayment): boolean {
  if (!provider.currencies.includes(payment.currency)) return false;
  const max = provider.maxAmount.get(payment.currency);
  if (max && payment.amount.gt(max)) return false;
  return !standing.draining && !standing.open;
}

export function matches(when: RoutingCondition, payment: RoutedPayment): boolean {
  if (when.currency !== undefined && when.currency !== payment.currency) return false;
  if (when.clientId !== undefined && when.clientId !== payment.clientId) return false;
  if (when.amountGte && payment.amount.lt(when.amountGte)) return false;
  if (when.amountLt && !payment.amount.lt(when.amountLt)) return false;
  return true;
}

/** Each configured list's priority order, sorted once (routing runs for every paid job). */
const sortedLists = new WeakMap<readonly ProviderConfig[], readonly ProviderConfig[]>();

/** Priority order: lower `priority` first, ties in the order of PAYMENT_PROVIDERS. Do not mutate the result. */
export function byPriority(providers: readonly ProviderConfig[]): readonly ProviderConfig[] {
  let sorted = sortedLists.get(providers);
  if (!sorted) {
    sorted = providers
      .map((provider, index) => ({ provider, index }))
      .sort((a, b) => a.provider.priority - b.provider.priority || a.index - b.index)
      .map(({ provider }) => provider);
    sortedLists.set(providers, sorted);
  }
  return sorted;
}

/**
 * Smooth weighted round robin (as in nginx's upstream module): every pick adds each
 * candidate's weight to its running credit, takes the candidate with the most credit and
 * charges it the total. Over any run of `sum(weights)` picks each candidate is chosen
 * exactly `weight` times, interleaved rather than in bursts, so the split is exact per
 * instance without randomness (and several instances each keep it on their own share).
 */
export class WeightedRoundRobin {
  private readonly credit = new Map<string, number>();

  pick(candidates: readonly ProviderConfig[]): ProviderConfig | undefined {
    const weighted = candidates.filter((c) => c.weight > 0);
    if (weighted.length === 0) return undefined;
    let total = 0;
    let best: ProviderConfig | undefined;
    let bestCredit = -Infinity;
    for (const candidate of weighted) {
      const credit = (this.credit.get(candidate.id) ?? 0) + candidate.weight;
      this.credit.set(candidate.id, credit);
      total += candidate.weight;
      if (credit > bestCredit) {
        best = candidate;
        bestCredit = credit;
      }
    }
    this.credit.set(best!.id, bestCredit - total);
    return best;
  }
}

/**
 * The providers to try for a new payment, best first, eligible ones only (empty: none
 * can take it). The first rule that matches decides the list (its `use` order, no
 * fallback to other providers: a rule is the operator's restriction). Otherwise the
 * default strategy: `priority` orders by priority; `volume_split` puts the weighted pick
 * first and the rest by priority (where a failover goes).
 */
export function candidates(
  routing: RoutingConfig,
  providers: readonly ProviderConfig[],
  standing: (id: string) => ProviderStanding,
  payment: RoutedPayment,
  split: WeightedRoundRobin,
): ProviderConfig[] {
  const eligible = (p: ProviderConfig) => isEligible(p, standing(p.id), payment);
  const rule = routing.rules.find((r) => matches(r.when, payment));
  if (rule) {
    return rule.use.map((id) => providers.find((p) => p.id === id) as ProviderConfig).filter(eligible);
  }
  const ordered = byPriority(providers).filter(eligible);
  if (routing.default === 'priority') return ordered;
  const chosen = split.pick(ordered);
  return chosen ? [chosen, ...ordered.filter((p) => p !== chosen)] : ordered;
}

/**
 * Where an escrow creation goes when its provider certainly never received it: the
 * matching rule's list, else every provider by priority, eligible ones only. The caller
 * skips the providers already tried. The split is not consulted: a failover is not a new
 * payment and must not shift the weights.
 */
export function failoverCandidates(
  routing: RoutingConfig,
  providers: readonly ProviderConfig[],
  standing: (id: string) => ProviderStanding,
  payment: RoutedPayment,
): ProviderConfig[] {
  return candidates(
    { rules: routing.rules, default: 'priority' },
    providers,
    standing,
    payment,
    new WeightedRoundRobin(),
  );
}
