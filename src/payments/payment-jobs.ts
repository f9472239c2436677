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
 * What Payments asks of the job table, declared here and provided by the jobs module's
 * `JobRepository` (which owns that table) through dependency injection: Payments never
 * imports Jobs, and no callback is registered at run time. Every method runs inside the
 * caller's transaction, unless it takes no `sql`.
 */
export abstract class PaymentJobs {
  /** Locks the job row (job before payment, always) and returns its facts. */
  abstract lockJob(sql: Sql, jobId: string): Promise<JobFacts | undefined>;

  /** Refunds were decided from the payment side: their jobs still live are canceled (or expired). */
  abstract endLiveJobs(sql: Sql, payments: JobPayment[], cause: RefundCause): Promise<void>;

  /** The daemon refused the escrow: the job, if still live, fails with this explanation. */
  abstract failLiveJob(sql: Sql, payment: JobPayment, error: string): Promise<void>;

  /** How late the oldest live job past its deadline with an escrowed payment is, in seconds (0 if none). */
  abstract oldestOverdueEscrowSeconds(sql: Sql): Promise<number>;
}
