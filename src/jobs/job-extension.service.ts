import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { DomainError, notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import type { JobPayment } from '../payments/job-payment.entity';
import { PaymentsService, isUuid } from '../payments/payments.service';
import type { Job } from './job.entity';
import { planExtension } from './job-extension.rules';
import { JobRepository } from './job.repository';

/** What an extension answers: the job and its payment (none for an unpaid job) as they now stand. */
export interface Extended {
  job: Job;
  payment: JobPayment | null;
}

/**
 * `POST /v1/jobs/{job_id}/extend` (README "Escrow lifecycle"): a live job's deadline and
 * its escrowed payment's expiry move `seconds` later, within JOB_TTL_MAX_SECONDS of the
 * job's request and ESCROW_MAX_TIMEOUT_SECONDS of the hold. Decided and recorded in one
 * transaction (the job locked first, then each deadline a compare-and-set, the payment's
 * with its `escrow_extended` event); the wallet daemon's copy of the expiry is updated after
 * the commit. The expiry sweep reads the recorded deadlines, so it honours the extension
 * from the commit on. When the daemon does not confirm, the answer is 503 with the
 * extension standing and the re-drive repeating the daemon call (`PaymentExtension`).
 */
@Injectable()
export class JobExtension {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly payments: PaymentsService,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: JobRepository,
  ) {}

  async extend(principal: Principal, jobId: string, seconds: number): Promise<Extended> {
    if (!isUuid(jobId)) throw notFound('job', jobId);
    // A retry (same Idempotency-Key) of an extension that committed: carry it on, never extend twice.
    if (this.recovery.resumeFrom()) return this.finish(principal, jobId);
    const extended = await this.tx.run(async (sql) => {
      const job = await this.jobs.lockForExtension(sql, jobId);
      if (!job || !canSee(principal, job)) throw notFound('job', jobId);
      const payment = job.payment_id ? await this.payments.findForJob(sql, job.job_id) : undefined;
      const { refusal } = planExtension({ now: job.db_now, job, payment }, seconds, {
        jobTtlMaxSeconds: this.config.jobTtlMaxSeconds,
        escrowMaxTimeoutSeconds: this.config.escrowMaxTimeoutSeconds,
      });
      if (refusal) throw refusal;
      // Under the job's lock the rules above are exact; the statements repeat them as guards.
      const moved = payment
        ? await this.payments.extendEscrow(sql, payment.payment_id, seconds, principal.id)
        : undefined;
      if (payment && !moved) throw raced(jobId);
      const ended = await this.jobs.extendDeadline(sql, job.job_id, seconds, this.config.jobTtlMaxSeconds);
      if (!ended) throw raced(jobId);
      await this.recovery.record(sql, { job_id: job.job_id });
      return { job: ended, payment: moved ?? null };
    });
    if (extended.payment) await this.confirmAtDaemon(extended.payment);
    return extended;
  }

  /** The daemon's copy of the expiry; 503 (the extension standing) when it did not answer. */
  private async confirmAtDaemon(payment: JobPayment): Promise<void> {
    if (await this.payments.syncEscrowExpiry(payment)) return;
    throw new DomainError(
      'WALLET_DAEMON_UNAVAILABLE',
      'The extension is recorded and in force, but the wallet daemon has not confirmed it yet; it is retried automatically',
      {
        job_id: payment.job_id,
        payment_id: payment.payment_id,
        expires_at: payment.expires_at.toISOString(),
        extended: true,
      },
    );
  }

  /** The job and payment as recorded, with any daemon call still owed carried on. */
  private async finish(principal: Principal, jobId: string): Promise<Extended> {
    const job = await this.jobs.find(this.tx.sql, jobId);
    if (!job || !canSee(principal, job)) throw notFound('job', jobId);
    const payment = (job.payment_id && (await this.payments.findForJob(this.tx.sql, jobId))) || null;
    if (payment?.status === 'escrowed' && payment.next_attempt_at) await this.confirmAtDaemon(payment);
    return { job, payment: payment ? ((await this.payments.findForJob(this.tx.sql, jobId)) ?? null) : null };
  }
}

/** Under the job's lock nothing else moves these rows; kept as a guard all the same. */
function raced(jobId: string): DomainError {
  return new DomainError('INVALID_JOB_TRANSITION', `Job ${jobId} changed while it was being extended; try again`, {
    job_id: jobId,
  });
}

function canSee(principal: Principal, job: Job): boolean {
  return principal.role === 'admin' || (principal.role === 'client' && job.client_id === principal.id);
}
