import { Injectable, Logger } from '@nestjs/common';
import { runWithConcurrency } from '../common/concurrency';
import { Transactions } from '../database/transactions';
import { EscrowService } from '../escrow/escrow.service';
import { MetricsService } from '../metrics/metrics.service';
import { WalletDaemonRejected, WalletDaemonUnavailable } from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment } from './job-payment.entity';
import { JobPaymentsRepository } from './job-payments.repository';
import { PaymentCreation } from './payment-creation.service';
import { PaymentDaemonCalls } from './payment-daemon-calls.service';
import { PaymentExtension } from './payment-extension.service';
import { PaymentJobs } from './payment-jobs';
import { PaymentLog } from './payment-log';
import { PaymentSettlement, isDecided } from './payment-settlement.service';

/**
 * The re-drive worker and the backlog gauges. Decided work carries a lease
 * (`next_attempt_at`); whatever its request did not finish — a hold still `pending`, a
 * settlement still `releasing`/`refunding`, a hold that may have landed after its payment
 * failed at its deadline — is claimed here once the lease ran out and carried on with the
 * same daemon keys. State lives in the database, not in timers.
 */
@Injectable()
export class PaymentRedrive {
  private readonly logger = new Logger('Payments');

  constructor(
    private readonly tx: Transactions,
    private readonly escrow: EscrowService,
    private readonly metrics: MetricsService,
    private readonly payments: JobPaymentsRepository,
    private readonly jobs: PaymentJobs,
    private readonly calls: PaymentDaemonCalls,
    private readonly creation: PaymentCreation,
    private readonly settlement: PaymentSettlement,
    private readonly log: PaymentLog,
    private readonly extension: PaymentExtension,
  ) {}

  /**
   * Claims due rows with SKIP LOCKED and leases them, so any number of instances may run
   * this at once. Decided settlements go to the daemon in batches; the rarer kinds one by one.
   */
  async redriveDue(limit = 100): Promise<number> {
    const claimed = await this.payments.claimDue(this.tx.sql, limit);
    for (const payment of claimed) this.metrics.settlementRetries.inc({ status: payment.status });
    const decided = claimed.filter(isDecided);
    const others = claimed.filter((p) => !isDecided(p));
    await Promise.all([
      this.settlement
        .settleMany(decided)
        .catch((error: unknown) =>
          this.logger.error({ err: error, payments: decided.length }, 're-drive of settlements failed'),
        ),
      runWithConcurrency(others, 8, async (payment) => {
        try {
          await this.redrive(payment);
        } catch (error: unknown) {
          this.logger.error({ payment_id: payment.payment_id, err: error }, 're-drive failed');
        }
      }),
    ]);
    return claimed.length;
  }

  /** Updates the backlog gauges: work waiting on the daemon, and how late the oldest due escrow is. */
  async observeBacklog(): Promise<void> {
    const waiting = await this.payments.awaitingDaemon(this.tx.sql);
    for (const status of ['pending', 'releasing', 'refunding']) {
      this.metrics.awaitingDaemon.set({ status }, Number(waiting.find((w) => w.status === status)?.n ?? 0));
    }
    this.metrics.oldestOverdueEscrowSeconds.set(await this.jobs.oldestOverdueEscrowSeconds(this.tx.sql));
  }

  private async redrive(payment: JobPayment): Promise<JobPayment> {
    switch (payment.status) {
      case 'pending':
        return this.creation.escrowPayment(payment);
      case 'failed':
        return this.refundLateHold(payment);
      case 'escrowed':
        // An extension committed but not yet confirmed by the daemon: the same call again.
        await this.extension.syncDaemon(payment);
        return payment;
      default:
        // Nothing owed to the daemon any more (a stale attempt): stop re-driving it.
        await this.payments.stopRedrive(this.tx.sql, payment);
        return payment;
    }
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
      if (error instanceof WalletDaemonRejected)
        return (await this.payments.stopRedrive(this.tx.sql, payment)) ?? this.reload(payment);
      if (error instanceof WalletDaemonUnavailable) return this.calls.postpone(payment, error, 'escrow_create');
      throw error;
    }
    let transactionHash: string;
    try {
      transactionHash = await this.escrow.settle({
        ...payment,
        escrow_id: hold.escrow_id,
        escrow_address: hold.address,
        settle_reason: 'late_escrow_refunded',
      });
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable || error instanceof WalletDaemonRejected)
        return this.calls.postpone(payment, error, 'escrow_refund');
      throw error;
    }
    return this.tx.run(async (sql) => {
      await this.jobs.lockJob(sql, payment.job_id);
      const done = await this.payments.recordLateHoldRefund(sql, payment, hold, transactionHash);
      if (!done) return (await this.payments.find(sql, payment.payment_id)) as JobPayment;
      sql.afterCommit(() =>
        this.log.transition(done.payment_id, 'failed', 'failed', 'late_escrow_refunded', 'wallet-daemon'),
      );
      return done;
    });
  }

  private async reload(payment: JobPayment): Promise<JobPayment> {
    return (await this.payments.find(this.tx.sql, payment.payment_id)) as JobPayment;
  }
}
