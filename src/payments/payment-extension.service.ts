import { Inject, Injectable, Logger } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { EscrowService } from '../escrow/escrow.service';
import { WalletDaemonRejected, WalletDaemonUnavailable } from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment } from './job-payment.entity';
import { JobPaymentsRepository } from './job-payments.repository';
import { PaymentDaemonCalls } from './payment-daemon-calls.service';

/**
 * Escrow extension (README "Escrow lifecycle"). The coordinator's `expires_at` is the
 * deadline that counts: the expiry sweep is the only thing that refunds an escrow for
 * running out of time, and the wallet daemon never settles one by itself when it expires
 * (src/wallet-daemon/ has no timer). So the extension is decided and committed here
 * first — a compare-and-set with its `escrow_extended` event — and is in force from that
 * commit; the daemon's copy of the expiry is bookkeeping, sent afterwards with the key
 * `<payment_id>:extend:<expires_at>`.
 *
 * Failing closed: until the daemon confirms, the payment keeps a lease (`next_attempt_at`)
 * and the re-drive repeats the same call, so a failure is never forgotten and never
 * guessed at; the request that asked answers 503 (the extension itself stands, and a retry
 * with the same Idempotency-Key resumes it rather than extending twice). No daemon call is
 * made inside the transaction.
 */
@Injectable()
export class PaymentExtension {
  private readonly logger = new Logger('Payments');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly escrow: EscrowService,
    private readonly payments: JobPaymentsRepository,
    private readonly calls: PaymentDaemonCalls,
  ) {}

  /**
   * Inside the caller's transaction (the job locked): the escrowed payment's expiry
   * `seconds` later, within ESCROW_MAX_TIMEOUT_SECONDS of its hold. Undefined when the
   * compare-and-set found it no longer escrowed or past the maximum.
   */
  async extend(sql: Sql, paymentId: string, seconds: number, actor: string): Promise<JobPayment | undefined> {
    const moved = await this.payments.extendEscrow(sql, paymentId, seconds, this.config.escrowMaxTimeoutSeconds, actor);
    // Not a status change, so no transition counter: a log line after the commit.
    if (moved) {
      sql.afterCommit(() =>
        this.logger.log({ payment_id: moved.payment_id, expires_at: moved.expires_at, actor }, 'escrow extended'),
      );
    }
    return moved;
  }

  /**
   * After the commit: gives the daemon the payment's recorded expiry. True once the daemon
   * has it (or the escrow is no longer held there: settled meanwhile, nothing left to
   * extend); false when the daemon did not answer — the lease stays for the re-drive.
   */
  async syncDaemon(payment: JobPayment): Promise<boolean> {
    try {
      await this.escrow.extend(payment);
    } catch (error) {
      if (error instanceof WalletDaemonUnavailable) {
        await this.calls.postpone(payment, error, 'escrow_extend');
        return false;
      }
      if (!(error instanceof WalletDaemonRejected)) throw error;
      // A definite no: another try cannot help. The coordinator's deadline stands either way.
      if (error.code !== 'ESCROW_NOT_HELD') {
        this.logger.error(
          { payment_id: payment.payment_id, daemon_code: error.code, error: error.message },
          'escrow extension refused by wallet daemon; the coordinator deadline stands',
        );
      }
    }
    await this.payments.confirmExtension(this.tx.sql, payment);
    return true;
  }
}
