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

/**
 * How Payments reaches the job side without importing it (dependencies point
 * Jobs → Payments). The Jobs module registers its implementation at start-up.
 * Every method runs inside the caller's transaction.
 */
export interface JobLink {
  /** Locks the job row (job before payment, always) and returns its facts. */
  lockJob(sql: Sql, jobId: string): Promise<JobFacts | undefined>;
  /** Refunds were decided from the payment side: their jobs still live are canceled or expired. */
  onRefundsDecided(sql: Sql, payments: JobPayment[], cause: RefundCause): Promise<void>;
  /** The daemon refused the escrow: a job still live fails with this explanation. */
  onEscrowFailed(sql: Sql, payment: JobPayment, error: string): Promise<void>;
}

export const LIVE_JOB_STATES = ['queued', 'running'];

/**
 * `JobLink.lockJob` as a CTE, for a payment transition that runs as one statement (one
 * round trip, one commit). The payment UPDATE must reference `locked_job` in its WHERE
 * (`EXISTS (SELECT 1 FROM locked_job)`), which PostgreSQL evaluates before touching any
 * payment row: the job is locked first, the same order as every other transaction.
 */
export function lockedJobCte(jobIdParam: string): string {
  return `locked_job AS (SELECT state FROM job WHERE job_id = ${jobIdParam} FOR UPDATE)`;
}
