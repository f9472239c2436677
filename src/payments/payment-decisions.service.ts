import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { Coalescer } from '../common/coalescer';
import { DomainError } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { MetricsService } from '../metrics/metrics.service';
import type { JobPayment } from './job-payment.entity';
import { Decision, JobPaymentsRepository } from './job-payments.repository';
import { cannotSettle } from './payment.errors';
import { PaymentJobs } from './payment-jobs';
import { PaymentLog } from './payment-log';
import { DECIDED_STATUS, DEFAULT_SETTLE_REASON, releasedAmountOf, SettleAsk, settlementRefusal } from './payment-rules';
import { PaymentSettlement } from './payment-settlement.service';

/** A settlement ask with the caller who made it. */
type CallerAsk = SettleAsk & { principal: Principal };

/** What one settlement ask came to: the payment as it now stands, or the single call's error. */
export type SettleOutcome = { payment: JobPayment; error?: undefined } | { error: unknown; payment?: undefined };

/**
 * Decisions: escrowed → releasing/refunding. Every decision — a single release or refund, a
 * batch, coalesced single calls, a job's completion/failure/cancel, the deadline sweep — is
 * the one set statement `JobPaymentsRepository.decide`, inside a transaction holding the
 * jobs' locks, and is committed before the daemon is called (`PaymentSettlement`).
 */
@Injectable()
export class PaymentDecisions {
  /** Concurrent single releases and refunds, carried out together (README "Batch operations", coalescing). */
  private readonly settlements: Coalescer<CallerAsk, JobPayment>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly metrics: MetricsService,
    private readonly recovery: RecoveryPoints,
    private readonly payments: JobPaymentsRepository,
    private readonly jobs: PaymentJobs,
    private readonly settlement: PaymentSettlement,
    private readonly log: PaymentLog,
  ) {
    this.settlements = new Coalescer<CallerAsk, JobPayment>({
      maxGroup: config.coalesceMaxGroup,
      lanes: config.coalesceLanes,
      observer: metrics.coalescerObserver('settlement'),
      one: async (ask) => settledOrThrow(await this.settleSet([ask])),
      many: async (asks, handOff) =>
        (await this.settleSet(asks, handOff)).map((o) => (o.error ? { error: o.error } : { value: o.payment })),
    });
  }

  /**
   * One release or refund. A request holding an Idempotency-Key claim records its own
   * recovery point, so it goes alone; the others share a group (one decision, one daemon
   * call, one recording) with whoever asks meanwhile.
   */
  settleOne(ask: CallerAsk): Promise<JobPayment> {
    if (this.recovery.holdsClaim()) return this.settleSet([ask]).then(settledOrThrow);
    return this.settlements.submit(ask);
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

  /**
   * `settleRequested` for asks of several callers (coalesced single calls); `handOff` is
   * told once the decisions commit, before the daemon call.
   */
  private async settleSet(asks: CallerAsk[], handOff?: () => void): Promise<SettleOutcome[]> {
    // A retry whose first attempt died after deciding: those decisions are carried on as they stand.
    const decidedBefore = new Set(this.recovery.resumeFrom()?.payment_ids?.split(',') ?? []);
    const { refusals, decided } = await this.tx.run(async (sql) => {
      const facts = await this.payments.lockForSettlement(sql, asks.map((ask) => ask.payment_id).filter(isUuid));
      const byId = new Map(facts.map((row) => [row.payment_id, row]));
      const refusals = new Map<number, DomainError>();
      const accepted: { ask: CallerAsk; index: number }[] = [];
      asks.forEach((ask, index) => {
        const payment = byId.get(ask.payment_id);
        if (payment && decidedBefore.has(payment.payment_id)) return;
        const scale = payment ? this.config.currencies.get(payment.currency)?.scale : undefined;
        const refusal = settlementRefusal(ask.principal, ask, payment, payment?.job_state, scale);
        if (refusal) refusals.set(index, refusal);
        else {
          accepted.push({ ask, index });
          // Asked twice in one set (coalesced calls racing on one payment): the first decides;
          // the later ones are judged as the single call coming after it would be.
          if (payment) byId.set(payment.payment_id, { ...payment, status: DECIDED_STATUS[ask.action] });
        }
      });
      const moved = await this.decide(
        sql,
        accepted.map(({ ask }) => ({
          payment_id: ask.payment_id,
          to: DECIDED_STATUS[ask.action],
          reason: ask.reason ?? DEFAULT_SETTLE_REASON[ask.action],
          actor: ask.principal.id,
          released_amount: releasedAmountOf(ask),
        })),
      );
      const movedIds = new Set(moved.map((p) => p.payment_id));
      // Under the job locks nothing else moves an escrowed payment; kept as a guard all the same.
      for (const { ask, index } of accepted) {
        if (!movedIds.has(ask.payment_id)) {
          const now = (await this.payments.find(sql, ask.payment_id)) as JobPayment;
          refusals.set(index, cannotSettle(ask.payment_id, now.status));
        }
      }
      const refunds = moved.filter((p) => p.status === 'refunding');
      if (refunds.length > 0) await this.jobs.endLiveJobs(sql, refunds, 'refund_requested');
      if (moved.length > 0) await this.recovery.record(sql, { payment_ids: moved.map((p) => p.payment_id).join(',') });
      return { refusals, decided: [...moved, ...facts.filter((p) => decidedBefore.has(p.payment_id))] };
    });

    handOff?.();
    let finalById: Map<string, JobPayment>;
    try {
      // Each as its settlement left it: the rows the recording (or postponement) returned.
      const final = await this.settlement.settleMany(decided);
      finalById = new Map(final.map((p) => [p.payment_id, p]));
    } catch (error: unknown) {
      // The decisions are committed (the re-drive carries them on): an error now is each
      // decided ask's answer, as a single call's would be, never a reason to ask again.
      return asks.map((_ask, index) => ({ error: refusals.get(index) ?? error }));
    }
    return asks.map((ask, index) => {
      const refusal = refusals.get(index);
      return refusal ? { error: refusal } : { payment: finalById.get(ask.payment_id) as JobPayment };
    });
  }

  /**
   * escrowed → releasing/refunding for a set of decisions, with their events, inside the
   * caller's transaction (which holds the jobs' locks). Returns the payments that moved;
   * one that is not escrowed any more (somebody else decided first) is left out.
   */
  async decide(sql: Sql, decisions: Decision[]): Promise<JobPayment[]> {
    if (decisions.length === 0) return [];
    const moved = await this.payments.decide(sql, decisions);
    sql.afterCommit(() =>
      moved.forEach((p) =>
        this.log.transition(p.payment_id, 'escrowed', p.status, p.settle_reason, p.settled_by ?? 'unknown'),
      ),
    );
    return moved;
  }

  /**
   * Inside the deadline sweep (the jobs locked and just ended): refunds their escrowed
   * payments — the same decision statement as any other — and fails the ones never
   * escrowed. Such a payment keeps a next attempt: its escrow creation may still have
   * reached the daemon unseen, and the re-drive sends any such hold straight back.
   */
  async decideForExpiredJobs(sql: Sql, jobIds: string[]): Promise<JobPayment[]> {
    if (jobIds.length === 0) return [];
    const due = await this.payments.escrowedOfEndedJobs(sql, jobIds);
    const moved = await this.decide(
      sql,
      due.map((d) => ({ payment_id: d.payment_id, to: 'refunding' as const, reason: d.reason, actor: 'system' })),
    );
    const failed = await this.payments.failUnescrowedOfJobs(sql, jobIds);
    sql.afterCommit(() => {
      this.metrics.escrowsExpired.inc(moved.filter((p) => p.settle_reason === 'escrow_expired').length);
      for (const p of failed) {
        this.log.transition(p.payment_id, 'pending', 'failed', 'escrow_not_confirmed_before_deadline', 'system');
        this.metrics.escrowCreationFailures.inc({ reason: 'deadline_passed' });
      }
    });
    return moved;
  }
}

function settledOrThrow([outcome]: SettleOutcome[]): JobPayment {
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what the decision threw, unchanged
  if (outcome.error !== undefined) throw outcome.error;
  return outcome.payment as JobPayment;
}

export function isUuid(id: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id);
}
