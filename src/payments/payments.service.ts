import { Inject, Injectable, Logger } from '@nestjs/common';
import { uuidv7 } from 'uuidv7';
import type { Principal } from '../auth/api-keys';
import { Coalescer } from '../common/coalescer';
import { runWithConcurrency } from '../common/concurrency';
import { DomainError, notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { EscrowService, recordHoldSql, recordSettlementSql } from '../escrow/escrow.service';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { MetricsService } from '../metrics/metrics.service';
import {
  EscrowHold,
  WalletDaemonRejected,
  WalletDaemonUnavailable,
} from '../wallet-daemon-client/wallet-daemon.client';
import { JobFacts, LIVE_JOB_STATES, PaymentJobs, RefundCause, lockedJobCte } from './payment-jobs.repository';
import { JobPayment, PaymentEvent, PaymentStatus } from './job-payment.entity';
import { cannotSettle } from './payment.errors';
import { canSeePayment, DECIDED_STATUS, DEFAULT_SETTLE_REASON, SettleAsk, settlementRefusal } from './payment-rules';
import { PaymentRequest, PaymentTerms, preparePaymentTerms } from './payment-terms';

/** Marks a column to be set to the database's `now()` in a transition. */
const NOW = Symbol('now');
/** Marks a column to be set to the database's `now()` plus the settlement lease (one clock for every lease). */
const LEASE_END = Symbol('lease end');
type ColumnValue = string | number | null | typeof NOW | typeof LEASE_END;

interface MoveOptions {
  /** Lock the payment's job in the same statement, first (see `lockedJobCte`); the row then has `job_state`. */
  lockJob?: boolean;
  /** One more condition on the payment row, in SQL. */
  onlyIf?: string;
  /** More CTEs over the moved row (`moved`), e.g. the escrow record; `param` binds a value. */
  also?: (param: (value: unknown) => string) => string[];
}

type MovedPayment = JobPayment & { job_state?: string };

/** What a transition needs to know of the payment it moves. */
export type PaymentRef = Pick<JobPayment, 'payment_id' | 'job_id'>;

interface Actor {
  actor: string;
  reason?: string | null;
  details?: Record<string, unknown>;
}

/**
 * The one place where money rules live. Each status change is a compare-and-set UPDATE
 * whose row count decides, logged as an append-only event in the same statement. A
 * decided outcome (`releasing`/`refunding`) is committed before the wallet daemon is
 * called, and no transaction is open during a daemon call.
 *
 * Internal services inject this class directly; see README "PaymentsService".
 */
@Injectable()
export class PaymentsService {
  private readonly logger = new Logger('Payments');
  /** Set once the daemon answers 404/405 to settle-batch: one call per escrow from then on. */
  private batchSettleUnsupported = false;
  /** Likewise for create-batch. */
  private batchCreateUnsupported = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly escrow: EscrowService,
    private readonly metrics: MetricsService,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: PaymentJobs,
  ) {
    this.settlements = new Coalescer<CallerAsk, JobPayment>({
      maxGroup: config.coalesceMaxGroup,
      one: async (ask) => settledOrThrow(await this.settleSet([ask])),
      many: async (asks) =>
        (await this.settleSet(asks)).map((o) => (o.error ? { error: o.error } : { value: o.payment })),
    });
  }

  /** Concurrent single releases and refunds, carried out together (README "Batch operations", coalescing). */
  private readonly settlements: Coalescer<CallerAsk, JobPayment>;

  // ---------------------------------------------------------------- creation

  /** Validates payment input; throws a 400-class DomainError before anything is written. */
  prepareTerms(principal: Principal, request: PaymentRequest, fieldPrefix = ''): PaymentTerms {
    return preparePaymentTerms(this.config, principal, request, fieldPrefix);
  }

  /**
   * Inserts a `pending` payment for a job inside the caller's transaction. The caller
   * then calls `escrowPayment` after its commit. The row is leased to that caller
   * for a while, after which the re-drive worker takes over if it never finished.
   */
  async createPending(
    sql: Sql,
    jobId: string,
    clientId: string,
    terms: PaymentTerms,
    actor: string,
  ): Promise<JobPayment> {
    return this.insertPending(sql, { text: `SELECT $1::uuid AS job_id`, params: [jobId] }, clientId, terms, actor);
  }

  /**
   * Inserts a new job (the caller's `INSERT INTO job … RETURNING *`) and its `pending`
   * payment in one statement: one round trip, one commit. Then `escrowPayment`, as above.
   */
  async createPendingWithJob(
    jobInsert: { text: string; params: unknown[] },
    clientId: string,
    terms: PaymentTerms,
    actor: string,
    sql: Sql = this.tx.sql,
  ): Promise<JobPayment> {
    return this.insertPending(sql, jobInsert, clientId, terms, actor);
  }

  /** The payment insert and its event over `job_row`, whatever statement yields that row. */
  private async insertPending(
    sql: Sql,
    job: { text: string; params: unknown[] },
    clientId: string,
    terms: PaymentTerms,
    actor: string,
  ): Promise<JobPayment> {
    const params = [...job.params];
    const param = (value: unknown) => `$${params.push(value)}`;
    const timeout = param(terms.escrowTimeoutSeconds);
    const payment = (await sql.one<JobPayment>(
      `WITH job_row AS (${job.text}),
       created AS (
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   escrow_timeout_seconds, next_attempt_at, created_at, updated_at, expires_at)
         SELECT ${param(uuidv7())}, job_row.job_id, ${param(clientId)}, ${param(terms.amount)}, ${param(terms.currency.code)}, 'pending',
                ${param(terms.payerAddress)}, ${param(terms.refundAddress)}, ${timeout}::int,
                now() + ${param(this.config.settlementLeaseMs)}::int * interval '1 millisecond', now(), now(),
                now() + ${timeout}::int * interval '1 second'
           FROM job_row
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, NULL, 'pending', 'payment_created', ${param(actor)} FROM created)
       SELECT * FROM created`,
      params,
    )) as JobPayment;
    sql.afterCommit(() => this.logTransition(payment.payment_id, null, 'pending', 'payment_created', actor));
    return payment;
  }

  /**
   * Inserts the `pending` payments of many new jobs (already inserted in the caller's
   * transaction) in one statement, with their events. Then `escrowMany`, after the commit.
   */
  async createPendingMany(
    sql: Sql,
    items: { jobId: string; clientId: string; terms: PaymentTerms }[],
  ): Promise<JobPayment[]> {
    if (items.length === 0) return [];
    const created = await sql.rows<JobPayment>(
      `WITH input AS (
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::numeric[], $4::varchar[], $5::varchar[], $6::varchar[], $7::int[], $8::varchar[])
                    AS i(payment_id, job_id, amount, currency, payer_address, refund_address, timeout, client_id)),
       created AS (
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   escrow_timeout_seconds, next_attempt_at, created_at, updated_at, expires_at)
         SELECT payment_id, job_id, client_id, amount, currency, 'pending', payer_address, refund_address, timeout,
                now() + $9::int * interval '1 millisecond', now(), now(), now() + timeout * interval '1 second'
           FROM input
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, NULL, 'pending', 'payment_created', client_id FROM created)
       SELECT * FROM created`,
      [
        items.map(() => uuidv7()),
        items.map((i) => i.jobId),
        items.map((i) => i.terms.amount),
        items.map((i) => i.terms.currency.code),
        items.map((i) => i.terms.payerAddress),
        items.map((i) => i.terms.refundAddress),
        items.map((i) => i.terms.escrowTimeoutSeconds),
        items.map((i) => i.clientId),
        this.config.settlementLeaseMs,
      ],
    );
    sql.afterCommit(() =>
      created.forEach((p) => this.logTransition(p.payment_id, null, 'pending', 'payment_created', p.client_id)),
    );
    return created;
  }

  /**
   * Escrows many pending payments: one daemon call (create-batch) and one statement that
   * records every hold whose job is still live. The rest take the single path: a refused
   * hold fails its payment and job, an unanswered one waits for the re-drive, and a hold
   * whose job ended meanwhile is recorded and refunded at once by `escrowPayment`.
   */
  async escrowMany(payments: JobPayment[]): Promise<void> {
    const pending = payments.filter((p) => p.status === 'pending');
    if (pending.length < 2 || this.batchCreateUnsupported) {
      await runWithConcurrency(pending, 8, (payment) => this.escrowPayment(payment));
      return;
    }
    const outcomes = await this.daemonBatch(pending, () => this.escrow.holdBatch(pending), {
      route: 'create-batch',
      unavailable: (payment, error) => this.postpone(payment, error, 'escrow_create'),
      alone: (payment) => this.escrowPayment(payment),
    });
    if (!outcomes) return;
    const recorded = await this.recordHolds(
      pending.flatMap((payment, i) => {
        const outcome = outcomes[i];
        return 'hold' in outcome ? [{ payment, hold: outcome.hold }] : [];
      }),
    );
    await runWithConcurrency(
      pending.map((payment, i) => ({ payment, error: outcomes[i].error })),
      8,
      async ({ payment, error }) => {
        if (error instanceof WalletDaemonRejected) await this.failEscrow(payment, error);
        else if (error) await this.postpone(payment, error, 'escrow_create');
        else if (!recorded.has(payment.payment_id)) await this.escrowPayment(payment);
      },
    );
  }

  /** pending → escrowed for many holds of live jobs, with events and escrow records: jobs locked in one order, one statement. */
  private async recordHolds(held: { payment: JobPayment; hold: EscrowHold }[]): Promise<Set<string>> {
    if (held.length === 0) return new Set();
    const moved = await this.tx.run(async (sql) => {
      await sql.rows(
        `SELECT 1 FROM job WHERE job_id = ANY($1::uuid[]) AND state IN ('queued','running') ORDER BY job_id FOR UPDATE`,
        [held.map((h) => h.payment.job_id)],
      );
      return sql.rows<{ payment_id: string }>(
        `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[]) AS i(payment_id, escrow_id, escrow_address, tx_hash)),
         moved AS (
           UPDATE job_payments p SET status = 'escrowed', escrow_id = i.escrow_id, escrow_address = i.escrow_address, escrowed_at = now(),
                  next_attempt_at = NULL, last_error = NULL, updated_at = now()
             FROM input i
            WHERE p.payment_id = i.payment_id AND p.status = 'pending'
              AND EXISTS (SELECT 1 FROM job j WHERE j.job_id = p.job_id AND j.state IN ('queued','running'))
           RETURNING p.*, i.tx_hash),
         logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                    SELECT payment_id, 'pending', 'escrowed', 'escrow_created', 'system', jsonb_build_object('create_transaction_hash', tx_hash) FROM moved),
         hold_record AS (${recordHoldSql(`(SELECT payment_id, escrow_id, amount, currency, escrow_address, tx_hash AS create_transaction_hash FROM moved)`)})
         SELECT payment_id FROM moved`,
        [
          held.map((h) => h.payment.payment_id),
          held.map((h) => h.hold.escrow_id),
          held.map((h) => h.hold.address),
          held.map((h) => h.hold.transaction_hash),
        ],
      );
    });
    for (const { payment_id } of moved)
      this.logTransition(payment_id, 'pending', 'escrowed', 'escrow_created', 'system');
    return new Set(moved.map((m) => m.payment_id));
  }

  /** POST /v1/payments: a payment for an existing queued job of the caller that has none. */
  async create(principal: Principal, request: PaymentRequest & { job_id: string }): Promise<JobPayment> {
    const terms = this.prepareTerms(principal, request);
    // A retry whose first attempt died after committing the payment: carry that one on to escrow.
    const resumed = this.recovery.resumeFrom();
    if (resumed) return this.escrowPayment(await this.reload(this.tx.sql, resumed.payment_id));
    const payment = await this.tx.run(async (sql) => {
      const job = await this.jobs.lockJob(sql, request.job_id);
      if (!job || job.client_id !== principal.id) throw notFound('job', request.job_id);
      const live = await sql.one(`SELECT 1 FROM job_payments WHERE job_id = $1 AND status <> 'failed'`, [job.job_id]);
      if (live) throw new DomainError('JOB_ALREADY_PAID', `Job ${job.job_id} already has a payment`);
      // Only before dispatch: paying for work already handed out would not be "escrow first".
      if (job.state !== 'queued') {
        throw new DomainError(
          'INVALID_JOB_TRANSITION',
          `Job ${job.job_id} is ${job.state}; payments can be added only while queued`,
        );
      }
      const created = await this.createPending(sql, job.job_id, principal.id, terms, principal.id);
      await this.recovery.record(sql, { payment_id: created.payment_id });
      return created;
    });
    return this.escrowPayment(payment);
  }

  /** Asks the daemon to hold a pending payment and records the answer. Safe to repeat. */
  async escrowPayment(payment: JobPayment): Promise<JobPayment> {
    if (payment.status !== 'pending') return payment;
    try {
      const hold = await this.escrow.hold(payment);
      const escrowed: Record<string, ColumnValue> = {
        escrow_id: hold.escrow_id,
        escrow_address: hold.address,
        escrowed_at: NOW,
        next_attempt_at: null,
        last_error: null,
      };
      const actor: Actor = {
        actor: 'system',
        reason: 'escrow_created',
        details: { create_transaction_hash: hold.transaction_hash },
      };
      // The usual case in one statement: the job is still live, so the escrow simply stands.
      const fast = await this.move(this.tx.sql, payment, 'pending', 'escrowed', escrowed, actor, {
        lockJob: true,
        onlyIf: `EXISTS (SELECT 1 FROM locked_job WHERE state IN ('queued','running'))`,
        also: (param) => [
          `hold_record AS (${recordHoldSql(`(SELECT payment_id, escrow_id, amount, currency, escrow_address,
                                                    ${param(hold.transaction_hash)}::varchar AS create_transaction_hash FROM moved)`)})`,
        ],
      });
      if (fast) return fast;
      // Otherwise (the job ended meanwhile, or somebody else recorded the hold): escrow and
      // decide the refund in one transaction, so no crash can leave a hold on an ended job.
      return await this.tx
        .run(async (sql) => {
          const job = await this.jobs.lockJob(sql, payment.job_id);
          const moved = await this.move(sql, payment, 'pending', 'escrowed', escrowed, actor);
          if (!moved) return this.reload(sql, payment.payment_id);
          await this.escrow.recordHold(sql, moved, hold);
          if (job && !LIVE_JOB_STATES.includes(job.state)) {
            return (
              (await this.decide(sql, moved, 'refunding', { actor: 'system', reason: `job_${job.state}` })) ?? moved
            );
          }
          return moved;
        })
        .then((p) => this.settleIfDecided(p));
    } catch (error) {
      if (error instanceof WalletDaemonRejected) return this.failEscrow(payment, error);
      if (error instanceof WalletDaemonUnavailable) return this.postpone(payment, error, 'escrow_create');
      throw error;
    }
  }

  private async failEscrow(payment: JobPayment, error: WalletDaemonRejected): Promise<JobPayment> {
    const reason = error.insufficientFunds ? 'insufficient_funds' : `escrow_rejected: ${error.code}`;
    this.metrics.escrowCreationFailures.inc({ reason: error.insufficientFunds ? 'insufficient_funds' : 'rejected' });
    return this.tx.run(async (sql) => {
      await this.jobs.lockJob(sql, payment.job_id);
      const failed = await this.move(
        sql,
        payment,
        'pending',
        'failed',
        { failure_reason: reason, next_attempt_at: null, last_error: error.message },
        { actor: 'system', reason },
      );
      if (!failed) return this.reload(sql, payment.payment_id);
      await this.jobs.failLiveJob(sql, failed, `payment could not be escrowed: ${reason}`);
      return failed;
    });
  }

  // ---------------------------------------------------------------- decisions

  /**
   * Records the miner who will be paid when its job is dispatched, as SQL over the
   * dispatched job row(s) in `jobSource`, so the dispatch is one statement (see poll).
   */
  assignPayeeSql(jobSource: string, minerIdParam: string, payoutAddressParam: string): string {
    return `UPDATE job_payments p SET miner_id = ${minerIdParam}, payee_address = ${payoutAddressParam}, updated_at = now()
              FROM ${jobSource} j WHERE p.payment_id = j.payment_id AND p.status = 'escrowed'`;
  }

  /**
   * Moves an escrowed payment to `releasing` or `refunding` inside the caller's
   * transaction (which holds the job lock). Returns undefined when the payment is not
   * escrowed any more, i.e. somebody else decided first.
   */
  async decide(
    sql: Sql,
    payment: PaymentRef,
    to: 'releasing' | 'refunding',
    actor: Actor,
    options?: MoveOptions,
  ): Promise<JobPayment | undefined> {
    return this.move(
      sql,
      payment,
      'escrowed',
      to,
      {
        settle_reason: actor.reason ?? null,
        settled_by: actor.actor,
        next_attempt_at: LEASE_END,
      },
      actor,
      options,
    );
  }

  /** The job's payment, read inside the caller's transaction (after the job lock). */
  async findForJob(sql: Sql, jobId: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(`SELECT * FROM job_payments WHERE job_id = $1 ORDER BY created_at DESC LIMIT 1`, [
      jobId,
    ]);
  }

  /** Route: release to the assigned miner's payout address (owner or admin). */
  async release(
    principal: Principal,
    paymentId: string,
    body: { job_id?: string; reason?: string },
  ): Promise<JobPayment> {
    return this.settleOne({ principal, payment_id: paymentId, action: 'release', ...body });
  }

  /**
   * Route: refund to the refund address. A client may refund only before its job runs;
   * an admin any time before release. A job still live is canceled with it.
   */
  async refund(
    principal: Principal,
    paymentId: string,
    body: { job_id?: string; reason?: string },
  ): Promise<JobPayment> {
    return this.settleOne({ principal, payment_id: paymentId, action: 'refund', ...body });
  }

  /**
   * One release or refund. A request holding an Idempotency-Key claim records its own
   * recovery point, so it goes alone; the others share a group (one decision, one daemon
   * call, one recording) with whoever asks meanwhile.
   */
  private async settleOne(ask: CallerAsk): Promise<JobPayment> {
    if (this.recovery.holdsClaim()) return settledOrThrow(await this.settleSet([ask]));
    return this.settlements.submit(ask);
  }

  /** Internal callers: release many payments, each with exactly the single call's outcome. */
  releaseMany(principal: Principal, asks: Omit<SettleAsk, 'action'>[]): Promise<SettleOutcome[]> {
    return this.settleRequested(
      principal,
      asks.map((ask) => ({ ...ask, action: 'release' as const })),
    );
  }

  /** Internal callers: refund many payments, each with exactly the single call's outcome. */
  refundMany(principal: Principal, asks: Omit<SettleAsk, 'action'>[]): Promise<SettleOutcome[]> {
    return this.settleRequested(
      principal,
      asks.map((ask) => ({ ...ask, action: 'refund' as const })),
    );
  }

  /**
   * Releases and refunds asked for by a caller — one single call, or a batch — as one set:
   * the jobs are locked in one order, each ask is judged by `settlementRefusal`, the
   * accepted ones move to `releasing`/`refunding` in one compare-and-set statement with
   * their events, and after the commit they settle at the daemon together (one batch
   * call). Outcomes come back in the order asked; a refused ask never stops the others.
   * Payment ids must be distinct.
   */
  settleRequested(principal: Principal, asks: SettleAsk[]): Promise<SettleOutcome[]> {
    return this.settleSet(asks.map((ask) => ({ ...ask, principal })));
  }

  /** `settleRequested` for asks of several callers (coalesced single calls). */
  private async settleSet(asks: CallerAsk[]): Promise<SettleOutcome[]> {
    // A retry whose first attempt died after deciding: those decisions are carried on as they stand.
    const decidedBefore = new Set(this.recovery.resumeFrom()?.payment_ids?.split(',') ?? []);
    const { refusals, decided } = await this.tx.run(async (sql) => {
      const facts = await sql.rows<JobPayment & { job_state: string }>(
        `SELECT p.*, j.state AS job_state FROM job_payments p JOIN job j ON j.job_id = p.job_id
          WHERE p.payment_id = ANY($1::uuid[]) ORDER BY j.job_id FOR UPDATE OF j`,
        [asks.map((ask) => ask.payment_id).filter(isUuid)],
      );
      const byId = new Map(facts.map((row) => [row.payment_id, row]));
      const refusals = new Map<number, DomainError>();
      const accepted: { ask: CallerAsk; index: number }[] = [];
      asks.forEach((ask, index) => {
        const payment = byId.get(ask.payment_id);
        if (payment && decidedBefore.has(payment.payment_id)) return;
        const refusal = settlementRefusal(ask.principal, ask, payment, payment?.job_state);
        if (refusal) refusals.set(index, refusal);
        else {
          accepted.push({ ask, index });
          // Asked twice in one set (coalesced calls racing on one payment): the first decides;
          // the later ones are judged as the single call coming after it would be.
          if (payment) byId.set(payment.payment_id, { ...payment, status: DECIDED_STATUS[ask.action] });
        }
      });
      const moved =
        accepted.length === 0
          ? []
          : await this.decideMany(
              sql,
              accepted.map(({ ask }) => ask),
            );
      const movedIds = new Set(moved.map((p) => p.payment_id));
      // Under the job locks nothing else moves an escrowed payment; kept as a guard all the same.
      for (const { ask, index } of accepted) {
        if (!movedIds.has(ask.payment_id))
          refusals.set(index, cannotSettle(ask.payment_id, (await this.reload(sql, ask.payment_id)).status));
      }
      const refunds = moved.filter((p) => p.status === 'refunding');
      if (refunds.length > 0) await this.jobs.endLiveJobs(sql, refunds, 'refund_requested');
      if (moved.length > 0) await this.recovery.record(sql, { payment_ids: moved.map((p) => p.payment_id).join(',') });
      return { refusals, decided: [...moved, ...facts.filter((p) => decidedBefore.has(p.payment_id))] };
    });

    let finalById: Map<string, JobPayment>;
    try {
      if (decided.length === 1) await this.settle(decided[0]);
      else await this.settleMany(decided);
      const final =
        decided.length === 0
          ? []
          : await this.tx.sql.rows<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = ANY($1::uuid[])`, [
              decided.map((p) => p.payment_id),
            ]);
      finalById = new Map(final.map((p) => [p.payment_id, p]));
    } catch (error) {
      // The decisions are committed (the re-drive carries them on): an error now is each
      // decided ask's answer, as a single call's would be, never a reason to ask again.
      return asks.map((_ask, index) => ({ error: refusals.get(index) ?? error }));
    }
    return asks.map((ask, index) => {
      const refusal = refusals.get(index);
      return refusal ? { error: refusal } : { payment: finalById.get(ask.payment_id) as JobPayment };
    });
  }

  /** escrowed → releasing/refunding for a set of accepted asks, with their events: one statement. */
  private async decideMany(sql: Sql, asks: CallerAsk[]): Promise<JobPayment[]> {
    const moved = await sql.rows<JobPayment>(
      `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[]) AS i(payment_id, to_status, reason, actor)),
       moved AS (
         UPDATE job_payments p SET status = i.to_status, settle_reason = i.reason, settled_by = i.actor,
                next_attempt_at = now() + $5::int * interval '1 millisecond', updated_at = now()
           FROM input i WHERE p.payment_id = i.payment_id AND p.status = 'escrowed'
         RETURNING p.*),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, 'escrowed', status, settle_reason, settled_by FROM moved)
       SELECT * FROM moved`,
      [
        asks.map((ask) => ask.payment_id),
        asks.map((ask) => DECIDED_STATUS[ask.action]),
        asks.map((ask) => ask.reason ?? DEFAULT_SETTLE_REASON[ask.action]),
        asks.map((ask) => ask.principal.id),
        this.config.settlementLeaseMs,
      ],
    );
    sql.afterCommit(() =>
      moved.forEach((p) =>
        this.logTransition(p.payment_id, 'escrowed', p.status, p.settle_reason, p.settled_by ?? 'unknown'),
      ),
    );
    return moved;
  }

  /** Inside the deadline sweep: refunds (or fails) the payments of jobs that just expired. */
  async decideForExpiredJobs(sql: Sql, jobIds: string[]): Promise<JobPayment[]> {
    if (jobIds.length === 0) return [];
    const moved = await sql.rows<JobPayment & { reason: string }>(
      `WITH due AS (
         SELECT payment_id, CASE WHEN expires_at <= now() THEN 'escrow_expired' ELSE 'job_expired' END AS reason
           FROM job_payments WHERE job_id = ANY($1::uuid[]) AND status = 'escrowed' FOR UPDATE),
       moved AS (
         UPDATE job_payments p SET status = 'refunding', settle_reason = due.reason, settled_by = 'system',
                next_attempt_at = now() + $2 * interval '1 millisecond', updated_at = now()
           FROM due WHERE p.payment_id = due.payment_id AND p.status = 'escrowed'
         RETURNING p.*, due.reason),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, 'escrowed', 'refunding', reason, 'system' FROM moved)
       SELECT * FROM moved`,
      [jobIds, this.config.settlementLeaseMs],
    );
    // Never escrowed by the deadline: the payment fails with its job. Its escrow creation
    // may still have reached the daemon unseen, so it keeps a next attempt: the re-drive
    // makes sure any such hold goes straight back (`refundLateHold`).
    const failed = await sql.rows<{ payment_id: string }>(
      `WITH moved AS (
         UPDATE job_payments SET status = 'failed', failure_reason = 'escrow_not_confirmed_before_deadline',
                next_attempt_at = now(), updated_at = now()
          WHERE job_id = ANY($1::uuid[]) AND status = 'pending'
         RETURNING payment_id),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, 'pending', 'failed', 'escrow_not_confirmed_before_deadline', 'system' FROM moved)
       SELECT * FROM moved`,
      [jobIds],
    );
    sql.afterCommit(() => {
      for (const p of moved) {
        this.logTransition(p.payment_id, 'escrowed', 'refunding', p.reason, 'system');
        if (p.reason === 'escrow_expired') this.metrics.escrowsExpired.inc();
      }
      for (const p of failed) {
        this.logTransition(p.payment_id, 'pending', 'failed', 'escrow_not_confirmed_before_deadline', 'system');
        this.metrics.escrowCreationFailures.inc({ reason: 'deadline_passed' });
      }
    });
    return moved;
  }

  /**
   * A payment failed while its escrow creation was unconfirmed. Under the daemon contract
   * the only way to know whether a hold exists is to repeat the create with its key: a
   * definite refusal means there is none; a hold (found, or made by this very call) is
   * refunded at once with the settle key. The payment stays `failed`; the refund is on
   * record (refund transaction hash, escrow row, event).
   */
  private async refundLateHold(payment: JobPayment): Promise<JobPayment> {
    let hold;
    try {
      hold = await this.escrow.hold(payment);
    } catch (error) {
      if (error instanceof WalletDaemonRejected) {
        await this.tx.sql.rows(
          `UPDATE job_payments SET next_attempt_at = NULL, updated_at = now() WHERE payment_id = $1 AND status = 'failed'`,
          [payment.payment_id],
        );
        return this.reload(this.tx.sql, payment.payment_id);
      }
      if (error instanceof WalletDaemonUnavailable) return this.postpone(payment, error, 'escrow_create');
      throw error;
    }
    let transactionHash: string;
    const withHold = {
      ...payment,
      escrow_id: hold.escrow_id,
      escrow_address: hold.address,
      settle_reason: 'late_escrow_refunded',
    };
    try {
      transactionHash = await this.escrow.settle(withHold);
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable || error instanceof WalletDaemonRejected)
        return this.postpone(payment, error, 'escrow_refund');
      throw error;
    }
    return this.tx.run(async (sql) => {
      await this.jobs.lockJob(sql, payment.job_id);
      const done = await this.move(
        sql,
        payment,
        'failed',
        'failed',
        {
          escrow_id: hold.escrow_id,
          escrow_address: hold.address,
          refund_transaction_hash: transactionHash,
          refunded_at: NOW,
          verified_at: NOW,
          next_attempt_at: null,
          last_error: null,
        },
        { actor: 'wallet-daemon', reason: 'late_escrow_refunded', details: { transaction_hash: transactionHash } },
      );
      if (!done) return this.reload(sql, payment.payment_id);
      await this.escrow.recordHold(sql, done, hold);
      await this.escrow.recordSettlement(sql, payment.payment_id, 'refunded');
      return done;
    });
  }

  // ---------------------------------------------------------------- carrying out

  /** Carries out a decided outcome at the daemon and records the answer. Safe to repeat. */
  async settle(payment: JobPayment): Promise<JobPayment> {
    if (payment.status !== 'releasing' && payment.status !== 'refunding') return payment;
    const outcome = payment.status === 'releasing' ? 'released' : 'refunded';
    let transactionHash: string;
    try {
      transactionHash = await this.escrow.settle(payment);
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable) return this.settlementUnavailable(payment, error);
      if (error instanceof WalletDaemonRejected) return this.reconcile(payment, error);
      throw error;
    }
    return this.recordSettlement(payment, transactionHash);
  }

  /**
   * Carries out many decided outcomes (the deadline sweep and the re-drive): batches of
   * WALLET_DAEMON_BATCH_SIZE, one daemon call and one recording transaction per batch.
   * An item the daemon did not settle gets the single path's handling (reconcile or
   * postpone); a daemon without the batch route gets one call per escrow from then on.
   */
  async settleMany(payments: JobPayment[]): Promise<void> {
    const decided = payments.filter((p) => p.status === 'releasing' || p.status === 'refunding');
    const size = this.batchSettleUnsupported ? 0 : this.config.walletDaemonBatchSize;
    if (size < 2 || decided.length < 2) {
      await runWithConcurrency(decided, 8, (payment) => this.settle(payment));
      return;
    }
    const batches: JobPayment[][] = [];
    for (let i = 0; i < decided.length; i += size) batches.push(decided.slice(i, i + size));
    await runWithConcurrency(batches, 4, (batch) => this.settleBatch(batch));
  }

  private async settleBatch(batch: JobPayment[]): Promise<void> {
    const outcomes = await this.daemonBatch(batch, () => this.escrow.settleBatch(batch), {
      route: 'settle-batch',
      unavailable: (payment, error) => this.settlementUnavailable(payment, error),
      alone: (payment) => this.settle(payment),
    });
    if (!outcomes) return;
    const settled = batch.flatMap((payment, i) => {
      const outcome = outcomes[i];
      return outcome.error ? [] : [{ payment, transactionHash: outcome.transactionHash }];
    });
    await this.recordSettlements(settled);
    await runWithConcurrency(
      batch.map((payment, i) => ({ payment, error: outcomes[i].error })),
      8,
      async ({ payment, error }) => {
        if (error instanceof WalletDaemonRejected) await this.reconcile(payment, error);
        else if (error) await this.settlementUnavailable(payment, error);
      },
    );
  }

  /**
   * One daemon batch call (create-batch or settle-batch) for `payments`. When the call as a
   * whole has no answer, each payment is handled as an unanswered single call; when it is
   * refused as a whole (nothing was applied), each goes alone, and a 404/405 marks the
   * route missing at this daemon so later batches go one call per escrow. Returns the
   * per-item outcomes, or undefined when the items were handled here.
   */
  private async daemonBatch<O>(
    payments: JobPayment[],
    call: () => Promise<O[]>,
    fallback: {
      route: 'create-batch' | 'settle-batch';
      unavailable: (payment: JobPayment, error: WalletDaemonUnavailable) => Promise<unknown>;
      alone: (payment: JobPayment) => Promise<unknown>;
    },
  ): Promise<O[] | undefined> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable) {
        await runWithConcurrency(payments, 8, (payment) => fallback.unavailable(payment, error));
        return undefined;
      }
      if (!(error instanceof WalletDaemonRejected)) throw error;
      if (error.status === 404 || error.status === 405) {
        if (fallback.route === 'create-batch') this.batchCreateUnsupported = true;
        else this.batchSettleUnsupported = true;
        this.logger.warn({ status: error.status }, `wallet daemon has no ${fallback.route} route; one call per escrow`);
      }
      await runWithConcurrency(payments, 8, fallback.alone);
      return undefined;
    }
  }

  /**
   * Records many settlements the daemon carried out, in one transaction: the jobs are
   * locked first, in one order for every batch, then every payment moves with its event
   * and escrow record in one statement (compare-and-set on each decided status).
   */
  private async recordSettlements(settled: { payment: JobPayment; transactionHash: string }[]): Promise<void> {
    if (settled.length === 0) return;
    const moved = await this.tx.run(async (sql) => {
      await sql.rows(`SELECT 1 FROM job WHERE job_id = ANY($1::uuid[]) ORDER BY job_id FOR UPDATE`, [
        settled.map((s) => s.payment.job_id),
      ]);
      return sql.rows<{
        payment_id: string;
        from_status: PaymentStatus;
        status: PaymentStatus;
        settle_reason: string | null;
      }>(
        `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[]) AS i(payment_id, from_status, tx_hash)),
         moved AS (
           UPDATE job_payments p SET
                  status = CASE i.from_status WHEN 'releasing' THEN 'released' ELSE 'refunded' END,
                  transaction_hash = CASE i.from_status WHEN 'releasing' THEN i.tx_hash ELSE p.transaction_hash END,
                  released_at = CASE i.from_status WHEN 'releasing' THEN now() ELSE p.released_at END,
                  refund_transaction_hash = CASE i.from_status WHEN 'refunding' THEN i.tx_hash ELSE p.refund_transaction_hash END,
                  refunded_at = CASE i.from_status WHEN 'refunding' THEN now() ELSE p.refunded_at END,
                  verified_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now()
             FROM input i WHERE p.payment_id = i.payment_id AND p.status = i.from_status
           RETURNING p.payment_id, i.from_status, p.status, p.settle_reason, i.tx_hash),
         logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                    SELECT payment_id, from_status, status, settle_reason, 'wallet-daemon', jsonb_build_object('transaction_hash', tx_hash) FROM moved),
         released AS (${recordSettlementSql(`(SELECT payment_id FROM moved WHERE status = 'released')`, 'released')}),
         refunded AS (${recordSettlementSql(`(SELECT payment_id FROM moved WHERE status = 'refunded')`, 'refunded')})
         SELECT payment_id, from_status, status, settle_reason FROM moved`,
        [
          settled.map((s) => s.payment.payment_id),
          settled.map((s) => s.payment.status),
          settled.map((s) => s.transactionHash),
        ],
      );
    });
    for (const m of moved) this.logTransition(m.payment_id, m.from_status, m.status, m.settle_reason, 'wallet-daemon');
  }

  private settlementUnavailable(payment: JobPayment, error: WalletDaemonUnavailable): Promise<JobPayment> {
    const release = payment.status === 'releasing';
    this.metrics.settlementFailures.inc({ kind: release ? 'release' : 'refund' });
    return this.postpone(payment, error, release ? 'escrow_release' : 'escrow_refund');
  }

  /** Records a settlement the daemon carried out: one statement (job lock, status, event, escrow record). */
  private async recordSettlement(payment: JobPayment, transactionHash: string): Promise<JobPayment> {
    const outcome = payment.status === 'releasing' ? 'released' : 'refunded';
    const done = await this.move(
      this.tx.sql,
      payment,
      payment.status,
      outcome,
      {
        [outcome === 'released' ? 'transaction_hash' : 'refund_transaction_hash']: transactionHash,
        [outcome === 'released' ? 'released_at' : 'refunded_at']: NOW,
        verified_at: NOW,
        next_attempt_at: null,
        last_error: null,
      },
      { actor: 'wallet-daemon', reason: payment.settle_reason, details: { transaction_hash: transactionHash } },
      {
        lockJob: true,
        also: () => [`escrow_record AS (${recordSettlementSql('moved', outcome)})`],
      },
    );
    return done ?? this.reload(this.tx.sql, payment.payment_id);
  }

  /**
   * The daemon refused a settlement (e.g. the escrow is no longer held). Never guess:
   * ask the daemon what happened to the escrow; record it only if it is exactly the
   * outcome we decided, otherwise keep the payment as it is and raise the alarm.
   */
  private async reconcile(payment: JobPayment, error: WalletDaemonRejected): Promise<JobPayment> {
    const expected = payment.status === 'releasing' ? 'released' : 'refunded';
    try {
      const state = await this.escrow.inspect(payment);
      if (state.state === expected && state.transaction_hash)
        return this.recordSettlement(payment, state.transaction_hash);
    } catch {
      // fall through: still unknown
    }
    this.logger.error(
      { payment_id: payment.payment_id, status: payment.status, daemon_code: error.code },
      'settlement refused by wallet daemon; left for an operator',
    );
    this.metrics.settlementFailures.inc({ kind: expected === 'released' ? 'release' : 'refund' });
    return this.postpone(payment, error, 'reconcile');
  }

  /** Keeps decided work for the re-drive worker, with exponential backoff and jitter. */
  private async postpone(payment: JobPayment, error: Error, call: string): Promise<JobPayment> {
    this.logger.warn(
      { payment_id: payment.payment_id, status: payment.status, call, error: error.message },
      'wallet daemon call failed; will retry',
    );
    const row = await this.tx.sql.one<JobPayment>(
      `UPDATE job_payments SET last_error = $2, updated_at = now(),
              next_attempt_at = now() + LEAST(60, 0.5 * power(2, LEAST(attempts, 10))) * (0.5 + random() / 2) * interval '1 second'
        WHERE payment_id = $1 AND status = $3 RETURNING *`,
      [payment.payment_id, `${call}: ${error.message}`.slice(0, 500), payment.status],
    );
    return row ?? (await this.reload(this.tx.sql, payment.payment_id));
  }

  /** Carries a decided payment on to the daemon; any other payment is returned as it is. */
  async settleIfDecided(payment: JobPayment): Promise<JobPayment> {
    return payment.status === 'releasing' || payment.status === 'refunding' ? this.settle(payment) : payment;
  }

  /**
   * Re-drives decided work whose lease ran out: escrow creations still `pending`,
   * settlements `releasing`/`refunding`, and holds that may have landed after their
   * payment failed at its deadline. Rows are claimed with SKIP LOCKED and leased, so
   * any number of instances may run this at once; state lives in the database, not in timers.
   */
  async redriveDue(limit = 100): Promise<number> {
    const claimed = await this.tx.sql.rows<JobPayment>(
      `UPDATE job_payments SET attempts = attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
        WHERE payment_id IN (SELECT payment_id FROM job_payments
                              WHERE next_attempt_at <= now()
                              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [limit, this.config.settlementLeaseMs],
    );
    for (const payment of claimed) this.metrics.settlementRetries.inc({ status: payment.status });
    // Decided settlements go to the daemon in batches; the rarer kinds one by one.
    const decided = claimed.filter((p) => p.status === 'releasing' || p.status === 'refunding');
    const others = claimed.filter((p) => !decided.includes(p));
    await Promise.all([
      this.settleMany(decided).catch((error) =>
        this.logger.error({ err: error, payments: decided.length }, 're-drive of settlements failed'),
      ),
      runWithConcurrency(others, 8, async (payment) => {
        try {
          await this.redrive(payment);
        } catch (error) {
          this.logger.error({ payment_id: payment.payment_id, err: error }, 're-drive failed');
        }
      }),
    ]);
    return claimed.length;
  }

  /** Updates the backlog gauges: work waiting on the daemon, and how late the oldest due escrow is. */
  async observeBacklog(): Promise<void> {
    const waiting = await this.tx.sql.rows<{ status: string; n: string }>(
      `SELECT status, count(*) AS n FROM job_payments WHERE status IN ('pending','releasing','refunding') GROUP BY status`,
    );
    for (const status of ['pending', 'releasing', 'refunding']) {
      this.metrics.awaitingDaemon.set({ status }, Number(waiting.find((w) => w.status === status)?.n ?? 0));
    }
    const overdue = await this.tx.sql.one<{ seconds: number | null }>(
      `SELECT EXTRACT(EPOCH FROM now() - min(expires_at))::float8 AS seconds FROM job
        WHERE state IN ('queued','running') AND expires_at <= now() AND payment_status = 'escrowed'`,
    );
    this.metrics.oldestOverdueEscrowSeconds.set(overdue?.seconds ?? 0);
  }

  private redrive(payment: JobPayment): Promise<JobPayment> {
    switch (payment.status) {
      case 'pending':
        return this.escrowPayment(payment);
      case 'releasing':
      case 'refunding':
        return this.settle(payment);
      case 'failed':
        return this.refundLateHold(payment);
      default:
        // Nothing owed to the daemon any more (a stale attempt): stop re-driving it.
        return this.tx.sql
          .rows(`UPDATE job_payments SET next_attempt_at = NULL WHERE payment_id = $1 AND status = $2`, [
            payment.payment_id,
            payment.status,
          ])
          .then(() => payment);
    }
  }

  // ---------------------------------------------------------------- reads

  async get(principal: Principal, paymentId: string): Promise<JobPayment> {
    return this.getOwned(principal, paymentId);
  }

  async getForJob(principal: Principal, jobId: string): Promise<JobPayment> {
    const payment = isUuid(jobId) ? await this.findForJob(this.tx.sql, jobId) : undefined;
    if (!payment || !canSeePayment(principal, payment))
      throw new DomainError('PAYMENT_NOT_FOUND', `Job ${jobId} has no payment`);
    return payment;
  }

  async events(principal: Principal, paymentId: string): Promise<PaymentEvent[]> {
    await this.getOwned(principal, paymentId);
    return this.tx.sql.rows<PaymentEvent>(`SELECT * FROM payment_events WHERE payment_id = $1 ORDER BY event_id`, [
      paymentId,
    ]);
  }

  /** Reads a payment the principal may see; others' payments are 404, never 403. */
  private async getOwned(principal: Principal, paymentId: string, jobId?: string): Promise<JobPayment> {
    const payment = isUuid(paymentId)
      ? await this.tx.sql.one<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = $1`, [paymentId])
      : undefined;
    if (!payment || !canSeePayment(principal, payment)) throw notFound('payment', paymentId);
    if (jobId !== undefined && jobId !== payment.job_id) {
      throw new DomainError('PAYMENT_JOB_MISMATCH', `Payment ${paymentId} does not belong to job ${jobId}`, {
        payment_job_id: payment.job_id,
      });
    }
    return payment;
  }

  private async reload(sql: Sql, paymentId: string): Promise<JobPayment> {
    return (await sql.one<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = $1`, [paymentId])) as JobPayment;
  }

  // ---------------------------------------------------------------- the one transition primitive

  /**
   * Compare-and-set of one payment's status plus its audit event, in one statement.
   * Returns the new row, or undefined when the payment was not in `from` any more (or
   * `options.onlyIf` did not hold). With `lockJob` the statement locks the payment's job
   * first and is a whole transaction on its own: one round trip, one commit.
   */
  private async move(
    sql: Sql,
    payment: PaymentRef,
    from: PaymentStatus,
    to: PaymentStatus,
    set: Record<string, ColumnValue>,
    actor: Actor,
    options: MoveOptions = {},
  ): Promise<MovedPayment | undefined> {
    const params: unknown[] = [payment.payment_id, from, to];
    const param = (value: unknown) => `$${params.push(value)}`;
    const sqlValue = (value: ColumnValue) =>
      value === NOW
        ? 'now()'
        : value === LEASE_END
          ? `now() + ${param(this.config.settlementLeaseMs)}::int * interval '1 millisecond'`
          : param(value);
    const assignments = Object.entries(set).map(([column, value]) => `, ${column} = ${sqlValue(value)}`);
    const conditions = [
      ...(options.lockJob ? ['EXISTS (SELECT 1 FROM locked_job)'] : []),
      ...(options.onlyIf ? [options.onlyIf] : []),
    ];
    const ctes = [
      ...(options.lockJob ? [lockedJobCte(param(payment.job_id))] : []),
      `moved AS (
         UPDATE job_payments SET status = $3::varchar, updated_at = now()${assignments.join('')}
          WHERE payment_id = $1 AND status = $2::varchar${conditions.map((c) => ` AND ${c}`).join('')} RETURNING *)`,
      `logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT payment_id, $2::varchar, $3::varchar, ${param(actor.reason ?? null)}, ${param(actor.actor)}, ${param(actor.details ? JSON.stringify(actor.details) : null)}::jsonb FROM moved)`,
      ...(options.also?.(param) ?? []),
    ];
    const row = await sql.one<MovedPayment>(
      `WITH ${ctes.join(',\n')}
       SELECT moved.*${options.lockJob ? ', (SELECT state FROM locked_job) AS job_state' : ''} FROM moved`,
      params,
    );
    if (row) sql.afterCommit(() => this.logTransition(payment.payment_id, from, to, actor.reason ?? null, actor.actor));
    return row;
  }

  private logTransition(
    paymentId: string,
    from: PaymentStatus | null,
    to: PaymentStatus,
    reason: string | null,
    actor: string,
  ): void {
    this.metrics.paymentTransitions.inc({ from: from ?? 'none', to });
    this.logger.log({ payment_id: paymentId, from, to, reason, actor }, 'payment status changed');
  }
}

/** A settlement ask with the caller who made it. */
type CallerAsk = SettleAsk & { principal: Principal };

/** What one settlement ask came to: the payment as it now stands, or the single call's error. */
export type SettleOutcome = { payment: JobPayment; error?: undefined } | { error: unknown; payment?: undefined };

function settledOrThrow([outcome]: SettleOutcome[]): JobPayment {
  if (outcome.error !== undefined) throw outcome.error;
  return outcome.payment as JobPayment;
}

export function isUuid(id: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id);
}

export type { JobFacts, RefundCause };
