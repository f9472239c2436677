import { Injectable, Logger } from '@nestjs/common';
import { runWithConcurrency } from '../common/concurrency';
import { Transactions } from '../database/transactions';
import { WalletDaemonRejected, WalletDaemonUnavailable } from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment } from './job-payment.entity';
import { JobPaymentsRepository } from './job-payments.repository';

export type BatchRoute = 'create-batch' | 'settle-batch';

/**
 * What happens when a wallet-daemon call fails, for holds and settlements alike: decided
 * work is postponed for the re-drive (never flipped, never guessed), and a batch call
 * that fails as a whole falls back to its items' single handling.
 */
@Injectable()
export class PaymentDaemonCalls {
  private readonly logger = new Logger('Payments');
  /** `<provider>/<route>` of the batch routes a provider answered 404/405: one call per escrow there from then on. */
  private readonly unsupported = new Set<string>();

  constructor(
    private readonly tx: Transactions,
    private readonly payments: JobPaymentsRepository,
  ) {}

  /** Whether the provider's daemon has shown it lacks `route`. */
  lacks(route: BatchRoute, providerId: string): boolean {
    return this.unsupported.has(`${providerId}/${route}`);
  }

  /** Keeps decided work for the re-drive worker, with exponential backoff and jitter. */
  async postpone(payment: JobPayment, error: Error, call: string): Promise<JobPayment> {
    this.logger.warn(
      { payment_id: payment.payment_id, status: payment.status, call, error: error.message },
      'wallet daemon call failed; will retry',
    );
    const row = await this.payments.postpone(this.tx.sql, payment, `${call}: ${error.message}`.slice(0, 500));
    return row ?? ((await this.payments.find(this.tx.sql, payment.payment_id)) as JobPayment);
  }

  /**
   * One daemon batch call (create-batch or settle-batch) for `payments`. When the call as a
   * whole has no answer, each payment is handled as an unanswered single call; when it is
   * refused as a whole (nothing was applied), each goes alone, and a 404/405 marks the
   * route missing at this provider's daemon (`payments` are of one provider) so later
   * batches there go one call per escrow. Returns the
   * per-item outcomes, or undefined when the items were handled here.
   */
  async batch<O>(
    payments: JobPayment[],
    call: () => Promise<O[]>,
    fallback: {
      route: BatchRoute;
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
        const provider = payments[0].provider_id;
        this.unsupported.add(`${provider}/${fallback.route}`);
        this.logger.warn(
          { status: error.status, provider },
          `wallet daemon has no ${fallback.route} route; one call per escrow`,
        );
      }
      await runWithConcurrency(payments, 8, fallback.alone);
      return undefined;
    }
  }
}
