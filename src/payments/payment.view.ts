import type { AppConfig } from '../config/app-config';
import { amountOut, iso } from '../common/format';
import type { PaymentEventView, PaymentView } from './dto/payment.dto';
import type { JobPayment, PaymentEvent } from './job-payment.entity';

export function toPaymentView(config: AppConfig, p: JobPayment): PaymentView {
  return {
    payment_id: p.payment_id,
    job_id: p.job_id,
    client_id: p.client_id,
    amount: amountOut(config, p.amount, p.currency) as string,
    currency: p.currency,
    status: p.status,
    payment_method: p.payment_method,
    escrow_id: p.escrow_id,
    escrow_address: p.escrow_address,
    payer_address: p.payer_address,
    refund_address: p.refund_address,
    payee_address: p.payee_address,
    miner_id: p.miner_id,
    transaction_hash: p.transaction_hash,
    refund_transaction_hash: p.refund_transaction_hash,
    created_at: iso(p.created_at) as string,
    updated_at: iso(p.updated_at) as string,
    escrowed_at: iso(p.escrowed_at),
    released_at: iso(p.released_at),
    refunded_at: iso(p.refunded_at),
    expires_at: iso(p.expires_at) as string,
    failure_reason: p.failure_reason,
    settle_reason: p.settle_reason,
  };
}

export function toEventView(e: PaymentEvent): PaymentEventView {
  return {
    from: e.from_status,
    to: e.to_status,
    reason: e.reason,
    actor: e.actor,
    details: e.details,
    at: iso(e.created_at) as string,
  };
}
