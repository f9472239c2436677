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
import { Job, Miner } from './job.entity';
import { invalidTransition } from './job.errors';
import { JobRepository } from './job.repository';
import { MinerRepository } from './miner.repository';
import { CreateJobInput, JobCreation } from './job-creation.service';
import { JobDispatch } from './job-dispatch.service';
import { JobReports } from './job-reports.service';
import { decodeCursor, encodeCursor } from './cursor';

export type { CreateJobInput };

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** Swept batches settling at once (measured on 2 cores: one left a third of the machine idle). */
const SETTLING_BATCHES = 2;

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
    private readonly dispatch: JobDispatch,
    private readonly reports: JobReports,
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
    if (this.recovery.resumeFrom()) return this.reports.resumeDecided(current.job_id);
    const decided = await this.tx.run(async (sql) => {
      const job = await this.jobs.cancel(sql, current.job_id, principal.id);
      if (!job) throw invalidTransition(jobId, (await this.load(jobId, sql)).state);
      await this.recovery.record(sql, { job_id: job.job_id });
      return this.reports.decidePayment(sql, job, 'canceled', principal.id);
    });
    if (decided) await this.payments.settle(decided);
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

  /** Claims the oldest dispatchable job (JobDispatch: coalesced with concurrent polls). */
  poll(principal: Principal): Promise<Job | undefined> {
    return this.dispatch.poll(principal);
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

  /** A miner's report (JobReports: coalesced with concurrent reports). */
  private report(
    principal: Principal,
    jobId: string,
    to: 'completed' | 'failed',
    data: { result?: unknown; metrics?: Record<string, unknown>; error?: string },
  ): Promise<Job> {
    return this.reports.report(principal, jobId, {
      to,
      result: data.result === undefined ? null : JSON.stringify(data.result),
      metrics: data.metrics ? JSON.stringify(data.metrics) : null,
      error: data.error ?? null,
    });
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
    // Decided batches settle at the daemon while the next is decided, up to
    // SETTLING_BATCHES at once (their steps fill each other's waits on the two databases).
    // Decisions commit first, so a crash in between leaves leased work for the re-drive,
    // never lost money.
    const settling: Promise<unknown>[] = [];
    let settleError: { error: unknown } | undefined;
    const settleInBackground = (payments: JobPayment[]) =>
      this.payments.settleMany(payments).catch((error: unknown) => (settleError ??= { error }));
    try {
      for (;;) {
        const decided = await this.expireBatch(batchSize);
        total += decided.count;
        if (settling.length >= SETTLING_BATCHES) await settling.shift();
        if (settleError) break;
        settling.push(settleInBackground(decided.payments));
        if (decided.count < batchSize) break;
      }
    } finally {
      await Promise.all(settling);
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
