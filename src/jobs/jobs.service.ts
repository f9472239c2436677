import { Inject, Injectable, Logger } from '@nestjs/common';
import { uuidv7 } from 'uuidv7';
import type { Principal } from '../auth/api-keys';
import { isValidAddress } from '../common/addresses';
import { Coalescer, ItemOutcome } from '../common/coalescer';
import { DomainError, notFound, validationError } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import type { JobPayment } from '../payments/job-payment.entity';
import { PaymentsService, isUuid } from '../payments/payments.service';
import { cannotSettle } from '../payments/payment.errors';
import type { PaymentTerms } from '../payments/payment-terms';
import { Job, Miner } from './job.entity';
import { invalidTransition, minerReportRefused } from './job.errors';
import { JobRepository, NewJob as NewJobRow } from './job.repository';
import { MinerRepository } from './miner.repository';
import { decodeCursor, encodeCursor } from './cursor';

export interface CreateJobInput {
  payload: Record<string, unknown>;
  constraints?: Record<string, unknown>;
  ttl_seconds?: number;
  payment_amount?: unknown;
  payment_currency?: string;
  payer_address?: string;
  refund_address?: string;
  escrow_timeout_seconds?: number;
}

/** One create of a set, by its caller. */
interface NewJob {
  principal: Principal;
  input: CreateJobInput;
}

/** A create checked and ready to insert. */
interface PreparedJob {
  payload: string;
  constraints: string;
  ttl: number;
  terms: PaymentTerms | undefined;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_PAYLOAD_DEPTH = 16;

/**
 * The job lifecycle: queued → running → completed | failed, queued|running → canceled |
 * expired. Every transition is a compare-and-set UPDATE; when a job with a payment moves,
 * Payments is told inside the same transaction, and the daemon is called after commit.
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
  ) {
    this.creates = new Coalescer<NewJob, Job>({
      maxGroup: config.coalesceMaxGroup,
      one: ({ principal, input }) => this.createOne(principal, input),
      many: (items) => this.createSet(items),
    });
  }

  /** Concurrent single creates, carried out together (README "Batch operations", coalescing). */
  private readonly creates: Coalescer<NewJob, Job>;

  // ---------------------------------------------------------------- clients

  async create(principal: Principal, input: CreateJobInput): Promise<Job> {
    const resumed = this.recovery.resumeFrom();
    if (resumed) return this.resumeCreate(resumed.job_id);
    // A request holding an Idempotency-Key claim records its own recovery point, fenced by
    // its own token, so it goes alone; the others share a group with whoever arrives meanwhile.
    if (this.recovery.holdsClaim()) return this.createOne(principal, input);
    return this.creates.submit({ principal, input });
  }

  /** One create on its own: job and payment in one statement, the escrow after the commit. */
  private async createOne(principal: Principal, input: CreateJobInput): Promise<Job> {
    const job = this.prepareJob(principal, input);
    const row = newJobRow(uuidv7(), principal, job);
    const terms = job.terms;
    if (!terms) {
      return (await this.recovery.firstWrite(
        (sql) => this.jobs.insert(sql, row),
        (inserted) => ({ job_id: inserted!.job_id }),
      )) as Job;
    }
    // Job and payment in one statement, the escrow after its commit, then the job as it now stands.
    const payment = await this.recovery.firstWrite(
      (sql) => this.payments.createPendingWithJob(row, terms, principal.id, sql),
      (created) => ({ job_id: created.job_id }),
    );
    await this.payments.escrowPayment(payment);
    return this.load(payment.job_id);
  }

  /**
   * POST /v1/jobs/batch and internal callers: many creates, each with exactly the single
   * create's outcome (a refused one never stops the others). The jobs and their payments
   * are inserted in one transaction (two statements for the whole set), escrowed in one
   * daemon call after the commit, and read back in one query.
   */
  async createMany(principal: Principal, inputs: CreateJobInput[]): Promise<ItemOutcome<Job>[]> {
    return this.createSet(inputs.map((input) => ({ principal, input })));
  }

  /** Creates as one set, each by its own principal (a batch, or coalesced single requests). */
  private async createSet(items: NewJob[]): Promise<ItemOutcome<Job>[]> {
    // A retry whose first attempt died after inserting: the jobs it made, by position.
    const resumed = this.recovery.resumeFrom()?.job_ids?.split(',');
    const prepared = items.map(({ principal, input }, index) => {
      if (resumed?.[index]) return { jobId: resumed[index] };
      try {
        return { jobId: uuidv7(), principal, job: this.prepareJob(principal, input) };
      } catch (error) {
        if (error instanceof DomainError) return { error };
        throw error;
      }
    });
    const fresh = prepared.filter(
      (p): p is { jobId: string; principal: Principal; job: PreparedJob } => 'job' in p && p.job !== undefined,
    );
    if (fresh.length > 0) {
      await this.tx.run(async (sql) => {
        await this.jobs.insertMany(
          sql,
          fresh.map((p) => newJobRow(p.jobId, p.principal, p.job)),
        );
        const paid = fresh
          .filter((p) => p.job.terms)
          .map((p) => ({ jobId: p.jobId, clientId: p.principal.id, terms: p.job.terms as PaymentTerms }));
        await this.payments.createPendingMany(sql, paid);
        await this.recovery.record(sql, { job_ids: prepared.map((p) => ('jobId' in p ? p.jobId : '')).join(',') });
      });
    }
    const jobIds = prepared.flatMap((p) => ('jobId' in p && p.jobId ? [p.jobId] : []));
    let byId: Map<string, Job>;
    try {
      const payments = jobIds.length ? await this.payments.pendingForJobs(jobIds) : [];
      await this.payments.escrowMany(payments);
      const jobs = jobIds.length ? await this.jobs.findMany(this.tx.sql, jobIds) : [];
      byId = new Map(jobs.map((job) => [job.job_id, job]));
    } catch (error: unknown) {
      // The jobs are committed: an error now is each created item's answer (as a single
      // create's would be, its payment left to the re-drive), never a reason to create again.
      return prepared.map((p) => ('error' in p && p.error ? { error: p.error } : { error }));
    }
    return prepared.map((p) =>
      'error' in p && p.error ? { error: p.error } : { value: byId.get((p as { jobId: string }).jobId) as Job },
    );
  }

  /** Validates one create completely before anything is written (throws a 400-class DomainError). */
  private prepareJob(principal: Principal, input: CreateJobInput): PreparedJob {
    checkJsonLimits('payload', input.payload);
    checkJsonLimits('constraints', input.constraints ?? {});
    const ttl = input.ttl_seconds ?? this.config.jobTtlDefaultSeconds;
    if (ttl > this.config.jobTtlMaxSeconds) {
      throw validationError('ttl_seconds is too large', {
        fields: { ttl_seconds: [`must be at most ${this.config.jobTtlMaxSeconds}`] },
      });
    }
    const paid = input.payment_amount !== undefined;
    if (
      !paid &&
      (input.payment_currency ?? input.payer_address ?? input.refund_address ?? input.escrow_timeout_seconds) !==
        undefined
    ) {
      throw validationError('payment fields need payment_amount', {
        fields: { payment_amount: ['required when other payment fields are given'] },
      });
    }
    const terms = paid
      ? this.payments.prepareTerms(
          principal,
          {
            amount: input.payment_amount,
            currency: input.payment_currency,
            payer_address: input.payer_address,
            refund_address: input.refund_address,
            escrow_timeout_seconds: input.escrow_timeout_seconds,
          },
          'payment_',
        )
      : undefined;
    return { payload: JSON.stringify(input.payload), constraints: JSON.stringify(input.constraints ?? {}), ttl, terms };
  }

  /**
   * A retried create whose first attempt died after committing its job: the job it made,
   * its payment carried on to escrow with the same daemon key (a no-op when already held).
   */
  private async resumeCreate(jobId: string): Promise<Job> {
    const payment = await this.payments.findForJob(this.tx.sql, jobId);
    if (payment) await this.payments.escrowPayment(payment);
    return this.load(jobId);
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

/** Payload and constraints: bounded size and nesting, so one request cannot exhaust the service. */
function checkJsonLimits(field: string, value: unknown): void {
  const bytes = Buffer.byteLength(JSON.stringify(value ?? null));
  if (bytes > MAX_PAYLOAD_BYTES)
    throw validationError(`${field} is too large`, {
      fields: { [field]: [`must be at most ${MAX_PAYLOAD_BYTES} bytes of JSON`] },
    });
  if (depth(value) > MAX_PAYLOAD_DEPTH)
    throw validationError(`${field} is nested too deeply`, {
      fields: { [field]: [`must be at most ${MAX_PAYLOAD_DEPTH} levels deep`] },
    });
}

function depth(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((max, child) => Math.max(max, depth(child)), 0);
}

/** The row a prepared create inserts. */
function newJobRow(jobId: string, principal: Principal, job: PreparedJob): NewJobRow {
  return {
    job_id: jobId,
    client_id: principal.id,
    payload: job.payload,
    constraints: job.constraints,
    ttl_seconds: job.ttl,
  };
}
