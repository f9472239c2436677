import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import type { Sql } from '../database/transactions';
import type { JobPayment, PaymentEvent } from './job-payment.entity';
import type { Decision, Moved, NewJobRow, Settled } from './job-payments.repository';
import { PaymentCreation } from './payment-creation.service';
import { PaymentDecisions, SettleOutcome, isUuid } from './payment-decisions.service';
import { PaymentExtension } from './payment-extension.service';
import { PaymentQueries } from './payment-queries.service';
import { PaymentRedrive } from './payment-redrive.service';
import type { SettleAsk } from './payment-rules';
import { PaymentSettlement } from './payment-settlement.service';
import type { PaymentRequest, PaymentTerms } from './payment-terms';

/**
 * The payments module's one entry point for controllers and other modules (README
 * "PaymentsService for internal callers"). It only delegates; each rule lives in one place:
 *
 * - `payment-rules.ts` — who may release or refund what (pure functions);
 * - `PaymentCreation` — insert `pending`, hold at the daemon, record `escrowed`;
 * - `PaymentDecisions` — escrowed → releasing/refunding: one set statement for one, many and swept;
 * - `PaymentSettlement` — carry decisions out at the daemon and record the answers;
 * - `PaymentRedrive` — leased work the daemon has not confirmed yet, and the backlog gauges;
 * - `PaymentQueries` — reads;
 * - `JobPaymentsRepository`, `PaymentEventsRepository` — every statement, written out whole.
 */
@Injectable()
export class PaymentsService {
  constructor(
    private readonly creation: PaymentCreation,
    private readonly decisions: PaymentDecisions,
    private readonly settlement: PaymentSettlement,
    private readonly redrive: PaymentRedrive,
    private readonly queries: PaymentQueries,
    private readonly extension: PaymentExtension,
  ) {}

  // ---------------------------------------------------------------- creation (PaymentCreation)

  prepareTerms(principal: Principal, request: PaymentRequest, fieldPrefix = ''): PaymentTerms {
    return this.creation.prepareTerms(principal, request, fieldPrefix);
  }

  create(principal: Principal, request: PaymentRequest & { job_id: string }): Promise<JobPayment> {
    return this.creation.create(principal, request);
  }

  createPending(sql: Sql, jobId: string, clientId: string, terms: PaymentTerms, actor: string): Promise<JobPayment> {
    return this.creation.createPending(sql, jobId, clientId, terms, actor);
  }

  createPendingWithJob(job: NewJobRow, terms: PaymentTerms, actor: string, sql?: Sql): Promise<JobPayment> {
    return this.creation.createPendingWithJob(job, terms, actor, sql);
  }

  createPendingMany(
    sql: Sql,
    items: { jobId: string; clientId: string; terms: PaymentTerms }[],
  ): Promise<JobPayment[]> {
    return this.creation.createPendingMany(sql, items);
  }

  /** `fresh`: just inserted by the caller, first daemon call (may fail over to another provider). */
  escrowPayment(payment: JobPayment, fresh = false): Promise<JobPayment> {
    return this.creation.escrowPayment(payment, fresh);
  }

  escrowMany(payments: JobPayment[], fresh = false): Promise<void> {
    return this.creation.escrowMany(payments, fresh);
  }

  // ---------------------------------------------------------------- decisions (PaymentDecisions)

  /** With `amount`, a partial release: the miner gets `amount`, the refund address the rest, in one settlement. */
  release(
    principal: Principal,
    paymentId: string,
    body: { job_id?: string; reason?: string; amount?: string },
  ): Promise<JobPayment> {
    return this.decisions.settleOne({ principal, payment_id: paymentId, action: 'release', ...body });
  }

  /** A client may refund only before its job runs; an admin any time before release. A live job is canceled with it. */
  refund(principal: Principal, paymentId: string, body: { job_id?: string; reason?: string }): Promise<JobPayment> {
    return this.decisions.settleOne({ principal, payment_id: paymentId, action: 'refund', ...body });
  }

  releaseMany(principal: Principal, asks: Omit<SettleAsk, 'action'>[]): Promise<SettleOutcome[]> {
    return this.settleRequested(
      principal,
      asks.map((ask) => ({ ...ask, action: 'release' as const })),
    );
  }

  refundMany(principal: Principal, asks: Omit<SettleAsk, 'action'>[]): Promise<SettleOutcome[]> {
    return this.settleRequested(
      principal,
      asks.map((ask) => ({ ...ask, action: 'refund' as const })),
    );
  }

  settleRequested(principal: Principal, asks: SettleAsk[]): Promise<SettleOutcome[]> {
    return this.decisions.settleRequested(principal, asks);
  }

  /** Inside the caller's transaction, which holds the jobs' locks; `settle` after the commit. */
  decide(sql: Sql, decisions: Decision[]): Promise<JobPayment[]> {
    return this.decisions.decide(sql, decisions);
  }

  decideForExpiredJobs(sql: Sql, jobIds: string[]): Promise<JobPayment[]> {
    return this.decisions.decideForExpiredJobs(sql, jobIds);
  }

  // ---------------------------------------------------------------- extension (PaymentExtension)

  /** Inside the caller's transaction (the job locked): the escrow's expiry `seconds` later. */
  extendEscrow(sql: Sql, paymentId: string, seconds: number, actor: string): Promise<JobPayment | undefined> {
    return this.extension.extend(sql, paymentId, seconds, actor);
  }

  /** After the commit: the daemon's copy of the expiry; false when it did not answer (the re-drive repeats it). */
  syncEscrowExpiry(payment: JobPayment): Promise<boolean> {
    return this.extension.syncDaemon(payment);
  }

  // ---------------------------------------------------------------- settlement and re-drive

  settle(payment: JobPayment): Promise<JobPayment> {
    return this.settlement.settle(payment);
  }

  settleIfDecided(payment: JobPayment): Promise<JobPayment> {
    return this.settlement.settleIfDecided(payment);
  }

  settleMany(payments: JobPayment[]): Promise<JobPayment[]> {
    return this.settlement.settleMany(payments);
  }

  redriveDue(limit?: number): Promise<number> {
    return this.redrive.redriveDue(limit);
  }

  observeBacklog(): Promise<void> {
    return this.redrive.observeBacklog();
  }

  /** Settlements the daemon carried out that were not recorded here yet (reconciliation): recorded now, no money moved. */
  recordReconciled(settled: Settled[]): Promise<Moved[]> {
    return this.settlement.recordReconciled(settled);
  }

  // ---------------------------------------------------------------- reads (PaymentQueries)

  get(principal: Principal, paymentId: string): Promise<JobPayment> {
    return this.queries.get(principal, paymentId);
  }

  getForJob(principal: Principal, jobId: string): Promise<JobPayment> {
    return this.queries.getForJob(principal, jobId);
  }

  events(principal: Principal, paymentId: string): Promise<PaymentEvent[]> {
    return this.queries.listEvents(principal, paymentId);
  }

  findForJob(sql: Sql, jobId: string): Promise<JobPayment | undefined> {
    return this.queries.findForJob(sql, jobId);
  }

  pendingForJobs(jobIds: string[]): Promise<JobPayment[]> {
    return this.queries.pendingForJobs(jobIds);
  }

  heldByProvider(): Promise<{ provider_id: string; currency: string; held: string }[]> {
    return this.queries.heldByProvider();
  }
}

export { isUuid };
export type { SettleOutcome };
export type { JobFacts, RefundCause } from './payment-jobs';
