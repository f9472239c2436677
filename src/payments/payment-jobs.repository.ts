import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { JobPayment } from './job-payment.entity';

/** What Payments needs to know about a payment's job, read under the job's row lock. */
export interface JobFacts {
  job_id: string;
  client_id: string;
  state: string;
  assigned_miner_id: string | null;
}

export type RefundCause = 'refund_requested' | 'escrow_expired';

export const LIVE_JOB_STATES = ['queued', 'running'];

/**
 * The statements Payments makes on the job table, written out here, in the payments
 * module: the small repository a lower module owns to touch a higher module's table
 * (dependencies point Jobs → Payments, so Payments cannot call the Jobs module). Locks a
 * payment's job first, and ends a live job when its payment's outcome ends it. Every
 * method runs inside the caller's transaction.
 */
@Injectable()
export class PaymentJobs {
  /** Locks the job row (job before payment, always) and returns its facts. */
  lockJob(sql: Sql, jobId: string): Promise<JobFacts | undefined> {
    return sql.one<JobFacts>(
      `SELECT job_id, client_id, state, assigned_miner_id FROM job WHERE job_id = $1 FOR UPDATE`,
      [jobId],
    );
  }

  /** Refunds were decided from the payment side: their jobs still live are canceled (or expired). */
  async endLiveJobs(sql: Sql, payments: JobPayment[], cause: RefundCause): Promise<void> {
    await sql.rows(
      `UPDATE job SET state = $2, error = 'payment refunded: ' || r.reason, finished_at = now(), updated_at = now()
         FROM unnest($1::uuid[], $3::text[]) AS r(job_id, reason)
        WHERE job.job_id = r.job_id AND state IN ('queued','running')`,
      [
        payments.map((p) => p.job_id),
        cause === 'escrow_expired' ? 'expired' : 'canceled',
        payments.map((p) => p.settle_reason ?? cause),
      ],
    );
  }

  /** The daemon refused the escrow: the job, if still live, fails with this explanation. */
  async failLiveJob(sql: Sql, payment: JobPayment, error: string): Promise<void> {
    await sql.rows(
      `UPDATE job SET state = 'failed', error = $2, finished_at = now(), updated_at = now()
        WHERE job_id = $1 AND state IN ('queued','running')`,
      [payment.job_id, error],
    );
  }
}

/**
 * `PaymentJobs.lockJob` as a CTE, for a payment transition that runs as one statement (one
 * round trip, one commit). The payment UPDATE must reference `locked_job` in its WHERE
 * (`EXISTS (SELECT 1 FROM locked_job)`), which PostgreSQL evaluates before touching any
 * payment row: the job is locked first, the same order as every other transaction.
 */
export function lockedJobCte(jobIdParam: string): string {
  return `locked_job AS (SELECT state FROM job WHERE job_id = ${jobIdParam} FOR UPDATE)`;
}
