import { setTimeout as sleep } from 'node:timers/promises';

/** Fault injection knobs, as on the wire of `POST /api/v1/faults`. */
export interface FaultSettings {
  /** Probability (0..1) of answering 503 without doing the work. */
  fail_rate: number;
  /** Delay before handling each request, in milliseconds. */
  latency_ms: number;
  /** Probability (0..1) of doing the work, then closing the socket without an answer. */
  drop_rate: number;
}

export const NO_FAULTS: FaultSettings = { fail_rate: 0, latency_ms: 0, drop_rate: 0 };

/** Upper bound on injected latency, so a typo cannot hang a test run for hours. */
export const MAX_LATENCY_MS = 60_000;

/** What the injector decided for one request. */
export type FaultDecision = 'fail' | 'drop' | 'none';

/**
 * Checks a partial settings object; returns an error message naming the field, or
 * null when valid. Rates and latency are probabilities and durations, never money.
 */
export function faultSettingsError(patch: Partial<Record<keyof FaultSettings, unknown>>): string | null {
  for (const field of ['fail_rate', 'drop_rate'] as const) {
    const rate = patch[field];
    if (rate !== undefined && !(typeof rate === 'number' && rate >= 0 && rate <= 1)) {
      return `${field} must be a number between 0 and 1`;
    }
  }
  const latency = patch.latency_ms;
  if (
    latency !== undefined &&
    !(Number.isInteger(latency) && (latency as number) >= 0 && (latency as number) <= MAX_LATENCY_MS)
  ) {
    return `latency_ms must be an integer between 0 and ${MAX_LATENCY_MS}`;
  }
  return null;
}

export class FaultInjector {
  private settings: FaultSettings;

  constructor(
    initial: FaultSettings = NO_FAULTS,
    private readonly random: () => number = Math.random,
  ) {
    this.settings = { ...initial };
  }

  current(): FaultSettings {
    return { ...this.settings };
  }

  /** Applies the given fields and keeps the others; validate with faultSettingsError first. */
  update(patch: Partial<FaultSettings>): FaultSettings {
    this.settings = {
      fail_rate: patch.fail_rate ?? this.settings.fail_rate,
      latency_ms: patch.latency_ms ?? this.settings.latency_ms,
      drop_rate: patch.drop_rate ?? this.settings.drop_rate,
    };
    return this.current();
  }

  /** Waits the configured latency, then draws whether this request fails, drops or runs normally. */
  async decide(): Promise<FaultDecision> {
    if (this.settings.latency_ms > 0) await sleep(this.settings.latency_ms);
    // Read the rates after the wait so settings changed meanwhile are honoured.
    const { fail_rate, drop_rate } = this.settings;
    if (this.random() < fail_rate) return 'fail';
    return this.random() < drop_rate ? 'drop' : 'none';
  }
}
