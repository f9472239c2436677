import { Inject, Injectable } from '@nestjs/common';
import { uuidv7 } from 'uuidv7';
import type { Principal } from '../auth/api-keys';
import { runWithConcurrency } from '../common/concurrency';
import { DomainError, notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { EscrowService, HoldOutcome } from '../escrow/escrow.service';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { MetricsService } from '../metrics/metrics.service';
import { PaymentProviders } from '../providers/payment-providers.service';
import {
  WalletDaemonRejected,
  WalletDaemonUnavailable,
  WalletDaemonUnreachable,
} from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment } from './job-payment.entity';
import { HeldPayment, JobPaymentsRepository, NewJobRow, NewPayment } from './job-payments.repository';
import { PaymentDaemonCalls } from './payment-daemon-calls.service';
import { PaymentDecisions } from './payment-decisions.service';
import { LIVE_JOB_STATES, PaymentJobs } from './payment-jobs';
import { PaymentLog } from './payment-log';
import { PaymentSettlement } from './payment-settlement.service';
import { PaymentRequest, PaymentTerms, preparePaymentTerms } from './payment-terms';

/**
 * Creation and escrow: a payment is inserted `pending` (leased to its creator), then,
 * after the commit, held at the daemon and recorded `escrowed`. A refused hold fails the
 * payment and its job; an unanswered one waits for the re-drive; a hold whose job ended
 * meanwhile is recorded and refunded at once.
 */
@Injectable()
export class PaymentCreation {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly escrow: EscrowService,
    private readonly metrics: MetricsService,
    private readonly recovery: RecoveryPoints,
    private readonly payments: JobPaymentsRepository,
    private readonly jobs: PaymentJobs,
    private readonly calls: PaymentDaemonCalls,
    private readonly decisions: PaymentDecisions,
    private readonly settlement: PaymentSettlement,
    private readonly log: PaymentLog,
    private readonly providers: PaymentProviders,
  ) {}

  /**
   * Validates payment input and routes it to a provider; throws a DomainError (400-class,
   * or 503 NO_PROVIDER_AVAILABLE) before anything is written.
   */
  prepareTerms(principal: Principal, request: PaymentRequest, fieldPrefix = ''): PaymentTerms {
    const terms = preparePaymentTerms(this.config, principal, request, fieldPrefix);
    const providerId = this.providers.route({
      currency: terms.currency.code,
      amount: terms.amount,
      client_id: principal.id,
    });
    return { ...terms, providerId };
  }

  /** POST /v1/payments: a payment for an existing queued job of the caller that has none. */
  async create(principal: Principal, request: PaymentRequest & { job_id: string }): Promise<JobPayment> {
    // A retry whose first attempt died after committing the payment: carry that one on to
    // escrow at its provider (the same body, so its terms were valid; nothing to route again).
    const resumed = this.recovery.resumeFrom();
    if (resumed) return this.escrowPayment((await this.payments.find(this.tx.sql, resumed.payment_id)) as JobPayment);
    const terms = this.prepareTerms(principal, request);
    const payment = await this.tx.run(async (sql) => {
      const job = await this.jobs.lockJob(sql, request.job_id);
      if (!job || job.client_id !== principal.id) throw notFound('job', request.job_id);
      if (await this.payments.hasLivePayment(sql, job.job_id))
        throw new DomainError('JOB_ALREADY_PAID', `Job ${job.job_id} already has a payment`);
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
    return this.escrowPayment(payment, true);
  }

  /** Inserts a `pending` payment for an existing job inside the caller's transaction; `escrowPayment` after its commit. */
  async createPending(
    sql: Sql,
    jobId: string,
    clientId: string,
    terms: PaymentTerms,
    actor: string,
  ): Promise<JobPayment> {
    const [created] = await this.createPendingMany(sql, [{ jobId, clientId, terms, actor }]);
    return created;
  }

  /**
   * Inserts a new job and its `pending` payment in one statement: one round trip, one
   * commit (what POST /v1/jobs uses). Then `escrowPayment`, after the commit.
   */
  async createPendingWithJob(
    job: NewJobRow,
    terms: PaymentTerms,
    actor: string,
    sql: Sql = this.tx.sql,
  ): Promise<JobPayment> {
    const payment = (await this.payments.insertPendingWithJob(
      sql,
      job,
      newPayment({ jobId: job.job_id, clientId: job.client_id, terms, actor }),
    )) as JobPayment;
    sql.afterCommit(() => this.log.transition(payment.payment_id, null, 'pending', 'payment_created', actor));
    return payment;
  }

  /** Inserts the `pending` payments of many existing jobs in one statement; `escrowMany` after the commit. */
  async createPendingMany(
    sql: Sql,
    items: { jobId: string; clientId: string; terms: PaymentTerms; actor?: string }[],
  ): Promise<JobPayment[]> {
    if (items.length === 0) return [];
    const created = await this.payments.insertPending(sql, items.map(newPayment));
    sql.afterCommit(() =>
      created.forEach((p) => this.log.transition(p.payment_id, null, 'pending', 'payment_created', p.client_id)),
    );
    return created;
  }

  /**
   * Asks the payment's provider to hold a pending payment and records the answer. Safe to
   * repeat. `fresh`: the caller inserted the payment and this is its first daemon call, so
   * a provider that certainly never received it (connection refused, circuit open) may be
   * replaced by the next eligible one; any other caller (a retried request, the re-drive)
   * cannot know what earlier calls reached, and stays with the payment's provider.
   */
  async escrowPayment(payment: JobPayment, fresh = false): Promise<JobPayment> {
    return this.escrowAt(payment, fresh ? new Set() : undefined);
  }

  /** `tried`: the providers this create certainly never reached (undefined: no failover). */
  private async escrowAt(payment: JobPayment, tried: Set<string> | undefined): Promise<JobPayment> {
    if (payment.status !== 'pending') return payment;
    try {
      const hold = await this.escrow.hold(payment);
      // The usual case in one statement: the job is still live, so the escrow simply stands.
      const [fast] = await this.payments.recordHolds(this.tx.sql, [{ payment, hold }], true);
      if (fast) {
        this.log.transition(fast.payment_id, 'pending', 'escrowed', 'escrow_created', 'system');
        return fast;
      }
      // Otherwise (the job ended meanwhile, or somebody else recorded the hold): escrow and
      // decide the refund in one transaction, so no crash can leave a hold on an ended job.
      const held = await this.tx.run(async (sql) => {
        const job = await this.jobs.lockJob(sql, payment.job_id);
        const [moved] = await this.payments.recordHolds(sql, [{ payment, hold }], false);
        if (!moved) return (await this.payments.find(sql, payment.payment_id)) as JobPayment;
        sql.afterCommit(() => this.log.transition(moved.payment_id, 'pending', 'escrowed', 'escrow_created', 'system'));
        if (job && !LIVE_JOB_STATES.includes(job.state)) {
          const [refunding] = await this.decisions.decide(sql, [
            { payment_id: moved.payment_id, to: 'refunding', reason: `job_${job.state}`, actor: 'system' },
          ]);
          return refunding ?? moved;
        }
        return moved;
      });
      return await this.settlement.settleIfDecided(held);
    } catch (error) {
      if (error instanceof WalletDaemonRejected) return this.failEscrow(payment, error);
      if (tried && error instanceof WalletDaemonUnreachable) {
        const moved = await this.failover(payment, tried, error);
        if (moved) return this.escrowAt(moved, tried);
      }
      if (error instanceof WalletDaemonUnavailable) return this.calls.postpone(payment, error, 'escrow_create');
      throw error;
    }
  }

  /** A fresh payment whose provider refused its create batch: straight to the next provider. */
  private async escrowElsewhere(payment: JobPayment, error: WalletDaemonUnreachable): Promise<JobPayment> {
    const tried = new Set<string>();
    const moved = await this.failover(payment, tried, error);
    return moved ? this.escrowAt(moved, tried) : this.calls.postpone(payment, error, 'escrow_create');
  }

  /**
   * Moves a pending payment whose provider certainly never received its create to the
   * next eligible provider (compare-and-set on the provider it was at; the same
   * `<payment_id>:create` key then goes to a different daemon). Undefined: none left, or
   * the payment changed meanwhile; it then stays where it is for the re-drive.
   */
  private async failover(
    payment: JobPayment,
    tried: Set<string>,
    error: WalletDaemonUnreachable,
  ): Promise<JobPayment | undefined> {
    tried.add(payment.provider_id);
    const next = this.providers.failoverTarget(payment, tried);
    if (!next) return undefined;
    const moved = await this.payments.moveToProvider(this.tx.sql, payment, next, error.message.slice(0, 500));
    if (moved) this.metrics.providerFailovers.inc({ from: payment.provider_id, to: next });
    return moved;
  }

  /**
   * Escrows many pending payments: one daemon call (create-batch) per provider, the calls
   * side by side, then one statement that records every hold whose job is still live,
   * whichever provider answered it (a commit per group, not per provider). The rest take
   * the single path: a refused hold fails its payment and job, an unanswered one waits for
   * the re-drive, and a hold whose job ended meanwhile is recorded and refunded at once by
   * `escrowPayment`.
   */
  async escrowMany(payments: JobPayment[], fresh = false): Promise<void> {
    const byProvider = new Map<string, JobPayment[]>();
    for (const p of payments.filter((p) => p.status === 'pending'))
      byProvider.set(p.provider_id, [...(byProvider.get(p.provider_id) ?? []), p]);
    const groups = [...byProvider.values()];
    const alone = groups.filter((g) => g.length < 2 || this.calls.lacks('create-batch', g[0].provider_id)).flat();
    const batched = groups.filter((g) => g.length >= 2 && !this.calls.lacks('create-batch', g[0].provider_id));
    const [, answered] = await Promise.all([
      runWithConcurrency(alone, 8, (payment) => this.escrowPayment(payment, fresh)),
      Promise.all(batched.map((group) => this.holdGroup(group, fresh))),
    ]);
    const answers = answered.flat();
    if (answers.length === 0) return;
    const recorded = await this.recordHoldsOfLiveJobs(
      answers.flatMap(({ payment, outcome }) => ('hold' in outcome ? [{ payment, hold: outcome.hold }] : [])),
    );
    await runWithConcurrency(answers, 8, async ({ payment, outcome }) => {
      if (outcome.error instanceof WalletDaemonRejected) await this.failEscrow(payment, outcome.error);
      else if (outcome.error) await this.calls.postpone(payment, outcome.error, 'escrow_create');
      else if (!recorded.has(payment.payment_id)) await this.escrowPayment(payment);
    });
  }

  /**
   * One provider's create-batch call for its pending payments: each payment's answer, or
   * none when the call as a whole failed (then each payment was handled on its own here).
   */
  private async holdGroup(
    pending: JobPayment[],
    fresh: boolean,
  ): Promise<{ payment: JobPayment; outcome: HoldOutcome }[]> {
    const outcomes = await this.calls.batch(pending, () => this.escrow.holdBatch(pending), {
      route: 'create-batch',
      // Refused before anything was sent: each item on its own, where a fresh one may fail over.
      unavailable: (payment, error) =>
        fresh && error instanceof WalletDaemonUnreachable
          ? this.escrowElsewhere(payment, error)
          : this.calls.postpone(payment, error, 'escrow_create'),
      alone: (payment) => this.escrowPayment(payment, fresh),
    });
    return outcomes ? pending.map((payment, i) => ({ payment, outcome: outcomes[i] })) : [];
  }

  /** pending → escrowed for many holds of live jobs: the same one statement as a single hold. */
  private async recordHoldsOfLiveJobs(held: HeldPayment[]): Promise<Set<string>> {
    if (held.length === 0) return new Set();
    const moved = await this.payments.recordHolds(this.tx.sql, held, true);
    for (const { payment_id } of moved)
      this.log.transition(payment_id, 'pending', 'escrowed', 'escrow_created', 'system');
    return new Set(moved.map((m) => m.payment_id));
  }

  /** The daemon refused the hold: the payment fails, and so does its job if still live. */
  private async failEscrow(payment: JobPayment, error: WalletDaemonRejected): Promise<JobPayment> {
    const reason = error.insufficientFunds ? 'insufficient_funds' : `escrow_rejected: ${error.code}`;
    this.metrics.escrowCreationFailures.inc({ reason: error.insufficientFunds ? 'insufficient_funds' : 'rejected' });
    return this.tx.run(async (sql) => {
      await this.jobs.lockJob(sql, payment.job_id);
      const failed = await this.payments.failEscrow(sql, payment, reason, error.message);
      if (!failed) return (await this.payments.find(sql, payment.payment_id)) as JobPayment;
      sql.afterCommit(() => this.log.transition(failed.payment_id, 'pending', 'failed', reason, 'system'));
      await this.jobs.failLiveJob(sql, failed, `payment could not be escrowed: ${reason}`);
      return failed;
    });
  }
}

/** A new payment's row from its validated terms (its id is time-ordered, like the job's). */
function newPayment(item: { jobId: string; clientId: string; terms: PaymentTerms; actor?: string }): NewPayment {
  return {
    payment_id: uuidv7(),
    job_id: item.jobId,
    client_id: item.clientId,
    amount: item.terms.amount,
    currency: item.terms.currency.code,
    payer_address: item.terms.payerAddress,
    refund_address: item.terms.refundAddress,
    escrow_timeout_seconds: item.terms.escrowTimeoutSeconds,
    actor: item.actor ?? item.clientId,
    provider_id: routedProvider(item.terms),
  };
}

/** The provider `prepareTerms` routed to; terms that skipped routing are a bug, never a guess. */
function routedProvider(terms: PaymentTerms): string {
  if (!terms.providerId) throw new Error('payment terms were not routed to a provider');
  return terms.providerId;
}
