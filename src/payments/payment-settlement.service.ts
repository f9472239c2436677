import { Inject, Injectable, Logger } from '@nestjs/common';
import { runWithConcurrency } from '../common/concurrency';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { EscrowService } from '../escrow/escrow.service';
import { MetricsService } from '../metrics/metrics.service';
import { WalletDaemonRejected, WalletDaemonUnavailable } from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment } from './job-payment.entity';
import { JobPaymentsRepository, Moved, Settled } from './job-payments.repository';
import { PaymentDaemonCalls } from './payment-daemon-calls.service';
import { PaymentLog } from './payment-log';

/**
 * Carries decided outcomes (`releasing` → payee, `refunding` → refund address) out at the
 * wallet daemon and records its answers. Called after the decision committed: no
 * transaction is open during a daemon call. Safe to repeat: release and refund of one
 * escrow share the daemon key `<payment_id>:settle`.
 */
@Injectable()
export class PaymentSettlement {
  private readonly logger = new Logger('Payments');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly escrow: EscrowService,
    private readonly metrics: MetricsService,
    private readonly payments: JobPaymentsRepository,
    private readonly calls: PaymentDaemonCalls,
    private readonly log: PaymentLog,
  ) {}

  /** Carries a decided payment on to the daemon; any other payment is returned as it is. */
  async settleIfDecided(payment: JobPayment): Promise<JobPayment> {
    return isDecided(payment) ? this.settle(payment) : payment;
  }

  /** Carries out one decided outcome and records the answer. */
  async settle(payment: JobPayment): Promise<JobPayment> {
    if (!isDecided(payment)) return payment;
    let transactionHash: string;
    try {
      transactionHash = await this.escrow.settle(payment);
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable) return this.unavailable(payment, error);
      if (error instanceof WalletDaemonRejected) return this.reconcile(payment, error);
      throw error;
    }
    return this.record(payment, transactionHash);
  }

  /**
   * Carries out many decided outcomes: batches of WALLET_DAEMON_BATCH_SIZE, one daemon call
   * and one recording transaction per batch. An item the daemon did not settle gets the
   * single path's handling (reconcile or postpone); a daemon without the batch route gets
   * one call per escrow from then on. Returns each payment as it stands afterwards, in the
   * order given: the rows the recording (or the postponement) wrote, so callers need not
   * read them again; a payment that is not decided comes back as it was.
   */
  async settleMany(payments: JobPayment[]): Promise<JobPayment[]> {
    const after = new Map<string, JobPayment>();
    // A batch goes to one daemon: the payments of each provider are batched apart.
    const byProvider = new Map<string, JobPayment[]>();
    for (const p of payments.filter(isDecided))
      byProvider.set(p.provider_id, [...(byProvider.get(p.provider_id) ?? []), p]);
    const singles: JobPayment[] = [];
    const batches: JobPayment[][] = [];
    for (const [provider, group] of byProvider) {
      const size = this.calls.lacks('settle-batch', provider) ? 0 : this.config.walletDaemonBatchSize;
      if (size < 2 || group.length < 2) singles.push(...group);
      else for (let i = 0; i < group.length; i += size) batches.push(group.slice(i, i + size));
    }
    await Promise.all([
      runWithConcurrency(singles, 8, async (payment) => void after.set(payment.payment_id, await this.settle(payment))),
      runWithConcurrency(batches, 4, async (batch) => {
        for (const row of await this.settleBatch(batch)) after.set(row.payment_id, row);
      }),
    ]);
    // Rows no step returned (a whole batch answered item by item after a failed call, or
    // recorded by someone else first): read once, together.
    const unknown = payments.filter((p) => isDecided(p) && !after.has(p.payment_id)).map((p) => p.payment_id);
    if (unknown.length > 0)
      for (const row of await this.payments.findMany(this.tx.sql, unknown)) after.set(row.payment_id, row);
    return payments.map((p) => after.get(p.payment_id) ?? p);
  }

  /** One batch at the daemon and its recording; returns the rows it recorded, reconciled or postponed. */
  private async settleBatch(batch: JobPayment[]): Promise<JobPayment[]> {
    const outcomes = await this.calls.batch(batch, () => this.escrow.settleBatch(batch), {
      route: 'settle-batch',
      unavailable: (payment, error) => this.unavailable(payment, error),
      alone: (payment) => this.settle(payment),
    });
    if (!outcomes) return [];
    const recorded = await this.recordMany(
      batch.flatMap((payment, i) => {
        const outcome = outcomes[i];
        return outcome.error ? [] : [{ payment, transactionHash: outcome.transactionHash }];
      }),
    );
    const handled: JobPayment[] = [];
    await runWithConcurrency(
      batch.map((payment, i) => ({ payment, error: outcomes[i].error })),
      8,
      async ({ payment, error }) => {
        if (error instanceof WalletDaemonRejected) handled.push(await this.reconcile(payment, error));
        else if (error) handled.push(await this.unavailable(payment, error));
      },
    );
    return [...recorded, ...handled];
  }

  /** Records one settlement the daemon carried out: a set of one of `recordMany`. */
  private async record(payment: JobPayment, transactionHash: string): Promise<JobPayment> {
    const [done] = await this.recordMany([{ payment, transactionHash }]);
    return done ?? ((await this.payments.find(this.tx.sql, payment.payment_id)) as JobPayment);
  }

  /** Records settlements the daemon carried out: one statement (jobs locked, statuses, events, escrow records). */
  private async recordMany(settled: Settled[]): Promise<JobPayment[]> {
    if (settled.length === 0) return [];
    const moved = await this.payments.recordSettlements(this.tx.sql, settled);
    return moved.map(({ from_status, ...payment }) => {
      this.log.transition(payment.payment_id, from_status, payment.status, payment.settle_reason, 'wallet-daemon');
      return payment;
    });
  }

  /**
   * Records settlements reconciliation found carried out at the daemon (the daemon's own
   * hash and outcome): the very statement a settlement's answer is recorded with, so a
   * payment the settlement path records meanwhile moves once. Returns those that moved.
   */
  async recordReconciled(settled: Settled[]): Promise<Moved[]> {
    if (settled.length === 0) return [];
    const moved = await this.payments.recordSettlements(this.tx.sql, settled, 'reconciliation');
    for (const m of moved)
      this.log.transition(m.payment_id, m.from_status, m.status, m.settle_reason, 'reconciliation');
    return moved;
  }

  private unavailable(payment: JobPayment, error: WalletDaemonUnavailable): Promise<JobPayment> {
    const release = payment.status === 'releasing';
    this.metrics.settlementFailures.inc({ kind: release ? 'release' : 'refund' });
    return this.calls.postpone(payment, error, release ? 'escrow_release' : 'escrow_refund');
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
      if (state.state === expected && state.transaction_hash) return this.record(payment, state.transaction_hash);
    } catch {
      // fall through: still unknown
    }
    this.logger.error(
      { payment_id: payment.payment_id, status: payment.status, daemon_code: error.code },
      'settlement refused by wallet daemon; left for an operator',
    );
    this.metrics.settlementFailures.inc({ kind: expected === 'released' ? 'release' : 'refund' });
    return this.calls.postpone(payment, error, 'reconcile');
  }
}

export function isDecided(payment: JobPayment): boolean {
  return payment.status === 'releasing' || payment.status === 'refunding';
}
