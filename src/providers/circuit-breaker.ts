/**
 * The circuit breaker of one provider, as pure rules over its shared row
 * (`provider_state`). The SQL in ProviderStateRepository makes exactly these transitions
 * as compare-and-set statements; these functions are what a reader checks them against,
 * and what an instance uses to read its cached copy of the row.
 *
 *   closed ──(N consecutive failures)──▶ open ──(cooldown passed)──▶ half_open
 *     ▲                                   ▲                              │ one probe call
 *     └───────────(success)───────────────┴──────────(failure)───────────┘
 */
export type CircuitState = 'closed' | 'open' | 'half_open';

export interface BreakerRow {
  consecutive_failures: number;
  /** When the circuit opened (or a probe last failed); null while closed. */
  opened_at: Date | null;
  /** When an instance claimed the half-open probe; null when none is out. */
  probe_at: Date | null;
}

export interface BreakerSettings {
  /** Consecutive failures that open the circuit. */
  failures: number;
  cooldownMs: number;
}

export const CLOSED: BreakerRow = { consecutive_failures: 0, opened_at: null, probe_at: null };

export function circuitState(row: BreakerRow, now: Date, settings: BreakerSettings): CircuitState {
  if (!row.opened_at) return 'closed';
  return now.getTime() - row.opened_at.getTime() < settings.cooldownMs ? 'open' : 'half_open';
}

/**
 * Whether an instance may claim the one probe of a half-open circuit now: none is out,
 * or the one out has had a whole cooldown to answer (its instance may have died).
 */
export function probeClaimable(row: BreakerRow, now: Date, settings: BreakerSettings): boolean {
  if (circuitState(row, now, settings) !== 'half_open') return false;
  return !row.probe_at || now.getTime() - row.probe_at.getTime() >= settings.cooldownMs;
}

/** A call failed without a definitive answer: count it; reaching the threshold (or failing while open, e.g. the probe) (re)opens. */
export function afterFailure(row: BreakerRow, now: Date, settings: BreakerSettings): BreakerRow {
  const consecutive = row.consecutive_failures + 1;
  const opens = row.opened_at !== null || consecutive >= settings.failures;
  return { consecutive_failures: consecutive, opened_at: opens ? now : null, probe_at: null };
}

/** A call got an answer (a refusal counts: the provider is up): closed again. */
export function afterSuccess(): BreakerRow {
  return CLOSED;
}

/** Whether a success has anything to reset: the hot path writes nothing while healthy. */
export function successChangesState(row: BreakerRow): boolean {
  return row.consecutive_failures > 0 || row.opened_at !== null || row.probe_at !== null;
}

/** The circuit gauge's value: 0 closed, 1 half-open, 2 open. */
export function stateGaugeValue(state: CircuitState): number {
  return state === 'closed' ? 0 : state === 'half_open' ? 1 : 2;
}
