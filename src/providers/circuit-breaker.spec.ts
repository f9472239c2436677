import {
  afterFailure,
  afterSuccess,
  BreakerRow,
  CLOSED,
  circuitState,
  probeClaimable,
  stateGaugeValue,
  successChangesState,
} from './circuit-breaker';

const settings = { failures: 5, cooldownMs: 10_000 };
const t0 = new Date('2026-11-30T12:00:00.000Z');
const at = (ms: number) => new Date(t0.getTime() + ms);
const row = (over: Partial<BreakerRow>): BreakerRow => ({ ...CLOSED, ...over });

describe('circuit breaker', () => {
  it.each([
    ['closed', CLOSED, at(0), 'closed'],
    ['failures below the threshold stay closed', row({ consecutive_failures: 4 }), at(0), 'closed'],
    ['just opened', row({ consecutive_failures: 5, opened_at: t0 }), at(0), 'open'],
    ['open until the cooldown has passed', row({ opened_at: t0 }), at(9_999), 'open'],
    ['half-open once it has', row({ opened_at: t0 }), at(10_000), 'half_open'],
    ['half-open with a probe out', row({ opened_at: t0, probe_at: at(10_000) }), at(12_000), 'half_open'],
  ])('%s', (_name, breaker, now, state) => {
    expect(circuitState(breaker, now, settings)).toBe(state);
  });

  it('opens after PROVIDER_BREAKER_FAILURES consecutive failures, not before', () => {
    let breaker = CLOSED;
    for (let i = 1; i <= 4; i++) {
      breaker = afterFailure(breaker, at(i), settings);
      expect(circuitState(breaker, at(i), settings)).toBe('closed');
      expect(breaker.consecutive_failures).toBe(i);
    }
    breaker = afterFailure(breaker, at(5), settings);
    expect(breaker).toEqual({ consecutive_failures: 5, opened_at: at(5), probe_at: null });
    expect(circuitState(breaker, at(5), settings)).toBe('open');
  });

  it('a success in between starts the count again', () => {
    let breaker = CLOSED;
    for (let i = 0; i < 4; i++) breaker = afterFailure(breaker, at(i), settings);
    expect(successChangesState(breaker)).toBe(true);
    breaker = afterSuccess();
    breaker = afterFailure(breaker, at(10), settings);
    expect(circuitState(breaker, at(10), settings)).toBe('closed');
  });

  it('half-open: one probe may be claimed; a failed probe reopens for another cooldown; a good one closes', () => {
    const open = row({ consecutive_failures: 5, opened_at: t0 });
    expect(probeClaimable(open, at(9_999), settings)).toBe(false);
    expect(probeClaimable(open, at(10_000), settings)).toBe(true);
    const probing = { ...open, probe_at: at(10_000) };
    // Another instance may not probe while that one is out…
    expect(probeClaimable(probing, at(15_000), settings)).toBe(false);
    // …unless it has had a whole cooldown to answer (its instance may have died).
    expect(probeClaimable(probing, at(20_000), settings)).toBe(true);

    const failed = afterFailure(probing, at(11_000), settings);
    expect(failed).toEqual({ consecutive_failures: 6, opened_at: at(11_000), probe_at: null });
    expect(circuitState(failed, at(11_000), settings)).toBe('open');
    expect(circuitState(failed, at(21_000), settings)).toBe('half_open');

    expect(afterSuccess()).toEqual(CLOSED);
    expect(circuitState(afterSuccess(), at(11_000), settings)).toBe('closed');
  });

  it('a healthy success writes nothing (the hot path)', () => {
    expect(successChangesState(CLOSED)).toBe(false);
    expect(successChangesState(row({ consecutive_failures: 1 }))).toBe(true);
    expect(successChangesState(row({ opened_at: t0 }))).toBe(true);
  });

  it('gauge values', () => {
    expect([stateGaugeValue('closed'), stateGaugeValue('half_open'), stateGaugeValue('open')]).toEqual([0, 1, 2]);
  });
});
