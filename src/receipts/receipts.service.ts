import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { amountOut, iso } from '../common/format';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Money } from '../common/money';
import type { JobPayment } from '../payments/job-payment.entity';
import { settledAmounts } from '../payments/payment.view';
import { HistoryService } from '../history/history.service';
import { ReceiptPublicKey, ReceiptSigner } from './receipt-signer';

/**
 * Signed receipts: the payment's facts plus an Ed25519 signature over their RFC 8785
 * canonical JSON. `verified` is true only once the wallet daemon confirmed the
 * settling transaction.
 */
@Injectable()
export class ReceiptsService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly history: HistoryService,
    private readonly signer: ReceiptSigner,
  ) {}

  async receipt(principal: Principal, paymentId: string) {
    // The client, an admin, or the miner it was released to (history-rules canReadReceipt).
    const payment = await this.history.receiptPayment(principal, paymentId);
    const facts = this.facts(payment);
    return { ...facts, signature: this.signer.sign(facts) };
  }

  keys(): ReceiptPublicKey[] {
    return this.signer.publicKeys();
  }

  private facts(p: JobPayment) {
    const released = p.status === 'released' || p.status === 'releasing';
    const amounts = settledAmounts(this.config, p);
    // A partial release pays the miner and returns the rest: both addresses are on the receipt.
    const refundedToo = released && amounts.refunded_amount !== null && !new Money(amounts.refunded_amount).isZero();
    return {
      // One receipt per payment and status: a refund and a release can never share an id.
      receipt_id: `rcpt_${p.payment_id}_${p.status}`,
      payment_id: p.payment_id,
      job_id: p.job_id,
      client_id: p.client_id,
      miner_id: p.miner_id,
      amount: amountOut(this.config, p.amount, p.currency) as string,
      currency: p.currency,
      status: p.status,
      payer: p.payer_address,
      payee_address: released ? p.payee_address : null,
      refund_address: released && !refundedToo ? null : p.refund_address,
      released_amount: amounts.released_amount,
      refunded_amount: amounts.refunded_amount,
      transaction_hash: p.transaction_hash,
      refund_transaction_hash: p.refund_transaction_hash,
      created_at: iso(p.created_at),
      escrowed_at: iso(p.escrowed_at),
      released_at: iso(p.released_at),
      refunded_at: iso(p.refunded_at),
      verified: p.verified_at !== null,
      verified_at: iso(p.verified_at),
    };
  }
}
