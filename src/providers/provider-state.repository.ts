// Owns the provider_state table.
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { BreakerRow } from './circuit-breaker';

/** One provider's shared row: its circuit breaker, drain flag and counters (bigints as text). */
export interface ProviderStateRow extends BreakerRow {
  provider_id: string;
  draining: boolean;
  calls: string;
  failures: string;
  updated_at: Date;
}

/**
 * Every statement on `provider_state`. A provider without a row is closed, not draining,
 * with no calls: rows are created by the first statement that has something to record.
 * Each transition is one compare-and-set statement mirroring `circuit-breaker.ts`, so
 * instances racing on the same provider agree on one outcome.
 */
@Injectable()
export class ProviderStateRepository {
  findAll(sql: Sql, providerIds: string[]): Promise<ProviderStateRow[]> {
    return sql.rows<ProviderStateRow>(`SELECT * FROM provider_state WHERE provider_id = ANY($1::varchar[])`, [
      providerIds,
    ]);
  }

  /** `afterFailure`: one more consecutive failure; at the threshold, or while already open (a failed probe), (re)opened now. */
  recordFailure(sql: Sql, providerId: string, threshold: number): Promise<ProviderStateRow | undefined> {
    return sql.one<ProviderStateRow>(
      `INSERT INTO provider_state AS s (provider_id, consecutive_failures, failures, opened_at, updated_at)
       VALUES ($1, 1, 1, CASE WHEN 1 >= $2::int THEN now() END, now())
       ON CONFLICT (provider_id) DO UPDATE SET
              consecutive_failures = s.consecutive_failures + 1,
              failures = s.failures + 1,
              opened_at = CASE WHEN s.opened_at IS NOT NULL OR s.consecutive_failures + 1 >= $2::int THEN now() END,
              probe_at = NULL,
              updated_at = now()
       RETURNING *`,
      [providerId, threshold],
    );
  }

  /** `afterSuccess`: closed again; no row changes (undefined) when it already was. */
  recordSuccess(sql: Sql, providerId: string): Promise<ProviderStateRow | undefined> {
    return sql.one<ProviderStateRow>(
      `UPDATE provider_state SET consecutive_failures = 0, opened_at = NULL, probe_at = NULL, updated_at = now()
        WHERE provider_id = $1 AND (consecutive_failures > 0 OR opened_at IS NOT NULL OR probe_at IS NOT NULL)
       RETURNING *`,
      [providerId],
    );
  }

  /**
   * `probeClaimable`: claims the one probe of a half-open circuit for the caller; undefined
   * when the circuit is not half-open or another instance holds a live probe.
   */
  claimProbe(sql: Sql, providerId: string, cooldownMs: number): Promise<ProviderStateRow | undefined> {
    return sql.one<ProviderStateRow>(
      `UPDATE provider_state SET probe_at = now(), updated_at = now()
        WHERE provider_id = $1 AND opened_at <= now() - $2::int * interval '1 millisecond'
          AND (probe_at IS NULL OR probe_at <= now() - $2::int * interval '1 millisecond')
       RETURNING *`,
      [providerId, cooldownMs],
    );
  }

  /** Drain (no new escrows) or resume a provider. */
  setDraining(sql: Sql, providerId: string, draining: boolean): Promise<ProviderStateRow | undefined> {
    return sql.one<ProviderStateRow>(
      `INSERT INTO provider_state AS s (provider_id, draining, updated_at) VALUES ($1, $2, now())
       ON CONFLICT (provider_id) DO UPDATE SET draining = EXCLUDED.draining, updated_at = now()
       RETURNING *`,
      [providerId, draining],
    );
  }

  /** Adds calls counted in memory since the last flush (one statement for every provider). */
  addCalls(sql: Sql, counts: { providerId: string; calls: number }[]): Promise<ProviderStateRow[]> {
    return sql.rows<ProviderStateRow>(
      `INSERT INTO provider_state AS s (provider_id, calls, updated_at)
       SELECT i.provider_id, i.calls, now() FROM unnest($1::varchar[], $2::bigint[]) AS i(provider_id, calls)
       ON CONFLICT (provider_id) DO UPDATE SET calls = s.calls + EXCLUDED.calls
       RETURNING *`,
      [counts.map((c) => c.providerId), counts.map((c) => c.calls)],
    );
  }
}
