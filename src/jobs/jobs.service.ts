import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { isValidAddress } from '../common/addresses';
import type { ItemOutcome } from '../common/coalescer';
import { DomainError, notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import type { JobPayment } from '../payments/job-payment.entity';
import { PaymentsService, isUuid } from '../payments/payments.service';
import { cannotSettle } from '../payments/payment.errors';
import { Job, Miner } from './job.entity';
import { invalidTransition, minerReportRefused } from './job.errors';
import { JobRepository } from './job.repository';
import { MinerRepository } from './miner.repository';
import { CreateJobInput, JobCreation } from './job-creation.service';
import { decodeCursor, encodeCursor } from './cursor';

export type { CreateJobInput };

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * The job lifecycle: queued → running → completed | failed, queued|running → canceled |
 * expired (creation is `JobCreation`). Every transition is a compare-and-set UPDATE; when
 * a job with a payment moves, Payments is told inside the same transaction, and the daemon
 * is called after commit.
 */
@Injectable()
export class JobsService {
  private readonly logger = new Logger('Jobs');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly payments: PaymentsService,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: JobRepository,
    private readonly miners: MinerRepository,
    private readonly creation: JobCreation,
  ) {}

  // ---------------------------------------------------------------- clients

  /** POST /v1/jobs (JobCreation: coalesced with concurrent creates). */
  create(principal: Principal, input: CreateJobInput): Promise<Job> {
    return this.creation.create(principal, input);
  }

  /** POST /v1/jobs/batch and internal callers: many creates, each with exactly the single create's outcome. */
  createMany(principal: Principal, inputs: CreateJobInput[]): Promise<ItemOutcome<Job>[]> {
    return this.creation.createMany(principal, inputs);
  }

  async get(principal: Principal, jobId: string): Promise<Job> {
    const job = isUuid(jobId) ? await this.jobs.find(this.tx.sql, jobId) : undefined;
    if (!job || !canSee(principal, job)) throw notFound('job', jobId);
    return job;
  }

  /** Newest first, keyset pagination on the time-ordered id: no gaps or repeats while rows are added. */
  async list(principal: Principal, limit: number, cursor?: string): Promise<Page<Job>> {
    const after = cursor ? decodeCursor(cursor) : undefined;
    const rows =
      principal.role === 'admin'
        ? await this.jobs.listAll(this.tx.sql, limit + 1, after)
        : await this.jobs.listForClient(this.tx.sql, principal.id, limit + 1, after);
    const items = rows.slice(0, limit);
    return { items, next_cursor: rows.length > limit ? encodeCursor(items[items.length - 1].job_id) : null };
  }

  /** Owner or admin: queued|running → canceled; an escrowed payment is refunded. */
  async cancel(principal: Principal, jobId: string): Promise<Job> {
    const current = await this.get(principal, jobId);
    if (this.recovery.resumeFrom()) return this.resumeDecided(current.job_id);
    const decided = await this.tx.run(async (sql) => {
      const job = await this.jobs.cancel(sql, current.job_id, principal.id);
      if (!job) throw invalidTransition(jobId, (await this.load(jobId, sql)).state);
      await this.recovery.record(sql, { job_id: job.job_id });
      return this.decidePayment(sql, job, 'refunding', principal.id, 'job_canceled', false);
    });
    if (decided) await this.payments.settle(decided);
    return this.load(jobId);
  }

  /**
   * A retried cancel/result/fail whose first attempt died after committing the job's
   * transition: the payment decided with it is carried on to the daemon (same key).
   */
  private async resumeDecided(jobId: string): Promise<Job> {
    const payment = await this.payments.findForJob(this.tx.sql, jobId);
    if (payment) await this.payments.settleIfDecided(payment);
    return this.load(jobId);
  }

  // ---------------------------------------------------------------- miners

  async registerMiner(principal: Principal, payoutAddress: string): Promise<Miner> {
    const valid = [...this.config.currencies.values()].some((c) =>
      isValidAddress(payoutAddress, c.addressFormat, c.network),
    );
    if (!valid) {
      throw new DomainError('INVALID_ADDRESS', 'payout_address is not a valid address of any supported currency', {
        fields: { payout_address: ['not a valid address'] },
      });
    }
    return (await this.miners.upsert(this.tx.sql, principal.id, payoutAddress)) as Miner;
  }

  /**
   * Claims the oldest dispatchable job. Fail closed: a job with a payment is dispatchable
   * only while escrowed, and only to a miner registered with a payout address valid for
   * the payment's currency. SKIP LOCKED: concurrent polls never get the same job.
   */
  async poll(principal: Principal): Promise<Job | undefined> {
    // A retried poll whose first attempt died after claiming a job: that job, not another.
    const resumed = this.recovery.resumeFrom();
    if (resumed) return this.load(resumed.job_id);
    const miner = await this.miners.find(this.tx.sql, principal.id);
    if (!miner) return this.dispatch(principal.id, [], null);
    const payable = [...this.config.currencies.values()]
      .filter((c) => isValidAddress(miner.payout_address, c.addressFormat, c.network))
      .map((c) => c.code);
    return this.dispatch(principal.id, payable, miner.payout_address);
  }

  /** Claims a job and records the payee of its payment in one statement (`JobRepository.claimNext`). */
  private async dispatch(minerId: string, payable: string[], payoutAddress: string | null): Promise<Job | undefined> {
    return this.recovery.firstWrite(
      (sql) => this.jobs.claimNext(sql, minerId, payable, payoutAddress),
      (job) => (job ? { job_id: job.job_id } : undefined),
    );
  }

  /** Assigned miner: running → completed; the escrow is released to the miner. */
  async complete(
    principal: Principal,
    jobId: string,
    result: unknown,
    metrics?: Record<string, unknown>,
  ): Promise<Job> {
    return this.report(principal, jobId, 'completed', { result, metrics });
  }

  /** Assigned miner: running → failed; the escrow is refunded to the client. */
  async fail(principal: Principal, jobId: string, error: string): Promise<Job> {
    return this.report(principal, jobId, 'failed', { error });
  }

  private async report(
    principal: Principal,
    jobId: string,
    to: 'completed' | 'failed',
    data: { result?: unknown; metrics?: Record<string, unknown>; error?: string },
  ): Promise<Job> {
    if (!isUuid(jobId)) throw notFound('job', jobId);
    if (this.recovery.resumeFrom()) return this.resumeDecided(jobId);
    const decided = await this.tx.run(async (sql) => {
      // Results after the deadline are refused even before the sweep has expired the job.
      const job = await this.jobs.report(sql, jobId, principal.id, {
        to,
        result: data.result === undefined ? null : JSON.stringify(data.result),
        metrics: data.metrics ? JSON.stringify(data.metrics) : null,
        error: data.error ?? null,
      });
      if (!job) throw minerReportRefused(jobId, principal.id, await this.jobs.find(sql, jobId));
      await this.recovery.record(sql, { job_id: job.job_id });
      return to === 'completed'
        ? this.decidePayment(sql, job, 'releasing', principal.id, 'job_completed', true)
        : this.decidePayment(sql, job, 'refunding', principal.id, 'job_failed', false);
    });
    if (decided) await this.payments.settle(decided);
    return this.load(jobId);
  }

  /**
   * Tells Payments what happened to the job, inside the job's transaction. An escrowed
   * payment is decided; one that somebody else already settled makes the whole job
   * transition fail (409), except a completion after an admin already paid the miner.
   */
  private async decidePayment(
    sql: Sql,
    job: Job,
    to: 'releasing' | 'refunding',
    actor: string,
    reason: string,
    paidIsFine: boolean,
  ): Promise<JobPayment | undefined> {
    if (!job.payment_id) return undefined;
    // job.payment_status mirrors the payment and is exact under the job's row lock.
    // Not escrowed yet: the re-drive worker escrows it and, seeing the job ended, refunds it.
    if (job.payment_status === 'pending' || job.payment_status === 'failed') return undefined;
    if (job.payment_status === 'escrowed') {
      const [moved] = await this.payments.decide(sql, [{ payment_id: job.payment_id, to, reason, actor }]);
      if (moved) return moved;
    }
    const now = (await this.payments.findForJob(sql, job.job_id)) as JobPayment;
    if (paidIsFine && (now.status === 'releasing' || now.status === 'released')) return undefined;
    if (!paidIsFine && (now.status === 'refunding' || now.status === 'refunded')) return undefined;
    throw cannotSettle(now.payment_id, now.status);
  }

  // ---------------------------------------------------------------- deadlines

  /**
   * Ends every live job past its deadline (the earlier of TTL and escrow expiry) and
   * refunds its escrow, in batches claimed with SKIP LOCKED so any number of instances
   * can sweep at once. A job whose payment never got escrowed fails instead.
   * This is also the escrow-expiry sweep: an escrowed payment's job is always live and
   * its deadline is never later than the escrow's expiry.
   */
  async expireDue(batchSize = 1000): Promise<number> {
    let total = 0;
    // One batch settles at the daemon while the next is decided. Decisions commit first,
    // so a crash in between leaves leased work for the re-drive, never lost money.
    let settling: Promise<unknown> = Promise.resolve();
    let settleError: { error: unknown } | undefined;
    const settleInBackground = (payments: JobPayment[]) =>
      this.payments.settleMany(payments).catch((error: unknown) => (settleError ??= { error }));
    try {
      for (;;) {
        const decided = await this.expireBatch(batchSize);
        total += decided.count;
        await settling;
        if (settleError) break;
        settling = settleInBackground(decided.payments);
        if (decided.count < batchSize) break;
      }
    } finally {
      await settling;
    }
    if (settleError) throw settleError.error;
    return total;
  }

  /** Ends up to `batchSize` due jobs and decides their payments, in one transaction. */
  private expireBatch(batchSize: number): Promise<{ count: number; payments: JobPayment[] }> {
    return this.tx.run(async (sql) => {
      const ended = await this.jobs.expireDue(sql, batchSize);
      const withPayment = ended.filter((j) => j.payment_id).map((j) => j.job_id);
      return { count: ended.length, payments: await this.payments.decideForExpiredJobs(sql, withPayment) };
    });
  }

  private async load(jobId: string, sql: Sql = this.tx.sql): Promise<Job> {
    return (await this.jobs.find(sql, jobId)) as Job;
  }
}

function canSee(principal: Principal, job: Job): boolean {
  return principal.role === 'admin' || (principal.role === 'client' && job.client_id === principal.id);
}
