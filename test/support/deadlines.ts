import { setTimeout as sleep } from 'node:timers/promises';
import { withClient } from './postgres';

/**
 * Time passing without waiting for it, so deadline tests do not depend on how fast a
 * request completes. Every deadline check in the code compares with the database's
 * `now()`, so these helpers set deadlines relative to that clock. They change only the
 * clock-driven columns; the code under test still decides everything.
 */

export interface MoveDeadlineOptions {
  /**
   * Move the live payment's escrow expiry (`job_payments.expires_at`) too, as when the
   * escrow's timeout is what ran out (refund reason `escrow_expired`). Without it only the
   * job's own deadline moves, as when its TTL ran out (`job_expired`).
   */
  escrow?: boolean;
}

/**
 * Sets the deadline of each job to the database's `now()` plus `offsetMs[i]` (negative:
 * already past), in one statement; returns the new deadlines in input order (ISO).
 */
export async function moveDeadlines(
  databaseUrl: string,
  jobIds: string[],
  offsetMs: number[],
  options: MoveDeadlineOptions = {},
): Promise<string[]> {
  if (jobIds.length !== offsetMs.length) throw new Error('moveDeadlines: one offset per job');
  const rows = await withClient(databaseUrl, async (client) => {
    const { rows } = await client.query<{ job_id: string; expires_at: Date }>(
      `WITH target AS (SELECT * FROM unnest($1::uuid[], $2::float8[]) AS u(job_id, offset_ms)),
       jobs AS (
         UPDATE job j SET expires_at = now() + t.offset_ms * interval '1 millisecond'
           FROM target t WHERE j.job_id = t.job_id RETURNING j.job_id, j.expires_at),
       payments AS (
         UPDATE job_payments p SET expires_at = now() + t.offset_ms * interval '1 millisecond'
           FROM target t WHERE $3::boolean AND p.job_id = t.job_id AND p.status <> 'failed' RETURNING p.job_id)
       SELECT job_id, expires_at FROM jobs`,
      [jobIds, offsetMs, options.escrow ?? false],
    );
    return rows;
  });
  const byJob = new Map(rows.map((row) => [row.job_id, row.expires_at.toISOString()]));
  return jobIds.map((jobId) => {
    const deadline = byJob.get(jobId);
    if (!deadline) throw new Error(`moveDeadlines: no job ${jobId}`);
    return deadline;
  });
}

/** One job's deadline to `offsetMs` from the database's now; returns it (ISO). */
export async function moveDeadline(
  databaseUrl: string,
  jobId: string,
  offsetMs: number,
  options: MoveDeadlineOptions = {},
): Promise<string> {
  return (await moveDeadlines(databaseUrl, [jobId], [offsetMs], options))[0];
}

/** Waits until the database's clock reads at least `at` (an ISO timestamp). */
export async function waitForDatabaseTime(databaseUrl: string, at: string): Promise<void> {
  await withClient(databaseUrl, async (client) => {
    for (;;) {
      const { rows } = await client.query<{ left_ms: number }>(
        `SELECT EXTRACT(EPOCH FROM ($1::timestamptz - clock_timestamp())) * 1000 AS left_ms`,
        [at],
      );
      const left = Number(rows[0].left_ms);
      if (left <= 0) return;
      await sleep(Math.min(left, 50));
    }
  });
}
