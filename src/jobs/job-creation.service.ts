import { Inject, Injectable } from '@nestjs/common';
import { uuidv7 } from 'uuidv7';
import type { Principal } from '../auth/api-keys';
import { Coalescer, ItemOutcome } from '../common/coalescer';
import { DomainError, validationError } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { MetricsService } from '../metrics/metrics.service';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { PaymentsService } from '../payments/payments.service';
import type { PaymentTerms } from '../payments/payment-terms';
import { Job } from './job.entity';
import { JobRepository, NewJob as NewJobRow } from './job.repository';

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

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_PAYLOAD_DEPTH = 16;

/**
 * Job creation, one or many: each create is checked completely before anything is
 * written; a paid job and its payment are inserted together (one statement for a single
 * create, one transaction for a set), and the payments are escrowed after the commit.
 */
@Injectable()
export class JobCreation {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly payments: PaymentsService,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: JobRepository,
    metrics: MetricsService,
  ) {
    this.creates = new Coalescer<NewJob, Job>({
      maxGroup: config.coalesceMaxGroup,
      lanes: config.coalesceLanes,
      observer: metrics.coalescerObserver('create'),
      one: ({ principal, input }) => this.createOne(principal, input),
      many: (items, handOff) => this.createSet(items, handOff),
    });
  }

  /** Concurrent single creates, carried out together (README "Batch operations", coalescing). */
  private readonly creates: Coalescer<NewJob, Job>;

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
    await this.payments.escrowPayment(payment, true);
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

  /**
   * Creates as one set, each by its own principal (a batch, or coalesced single requests);
   * `handOff` is told once the jobs and payments are committed, before the escrow call.
   */
  private async createSet(items: NewJob[], handOff?: () => void): Promise<ItemOutcome<Job>[]> {
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
    handOff?.();
    const jobIds = prepared.flatMap((p) => ('jobId' in p && p.jobId ? [p.jobId] : []));
    let byId: Map<string, Job>;
    try {
      const payments = jobIds.length ? await this.payments.pendingForJobs(jobIds) : [];
      // Fresh unless this retry resumes an attempt whose calls may have reached a daemon.
      await this.payments.escrowMany(payments, !resumed);
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

  private async load(jobId: string): Promise<Job> {
    return (await this.jobs.find(this.tx.sql, jobId)) as Job;
  }
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
