import type { AppConfig } from '../config/app-config';
import { amountOut, iso } from '../common/format';
import { DB_AMOUNT_SCALE, Money } from '../common/money';
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
    provider_id: p.provider_id,
    ...settledAmounts(config, p),
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

type SettledLegs = { released_amount: string | null; refunded_amount: string | null };

/**
 * released → the miner got `released_amount` (the whole amount unless a partial release
 * recorded less) and the rest went back to the client; refunded → all back; before a
 * final outcome (including releasing/refunding) both are null. At the database's scale,
 * as the row holds its amounts.
 */
export function settledLegs(
  p: Pick<JobPayment, 'amount' | 'status'> & { released_amount?: string | null },
): SettledLegs {
  const amount = new Money(p.amount);
  const zero = new Money(0).toFixed(DB_AMOUNT_SCALE);
  const whole = amount.toFixed(DB_AMOUNT_SCALE);
  if (p.status === 'released') {
    if (p.released_amount === null || p.released_amount === undefined)
      return { released_amount: whole, refunded_amount: zero };
    const released = new Money(p.released_amount);
    return {
      released_amount: released.toFixed(DB_AMOUNT_SCALE),
      refunded_amount: amount.minus(released).toFixed(DB_AMOUNT_SCALE),
    };
  }
  if (p.status === 'refunded') return { released_amount: zero, refunded_amount: whole };
  return { released_amount: null, refunded_amount: null };
}

/** `settledLegs` at the currency's scale, as the API shows amounts. */
export function settledAmounts(
  config: AppConfig,
  p: Pick<JobPayment, 'amount' | 'currency' | 'status'> & { released_amount?: string | null },
): SettledLegs {
  const legs = settledLegs(p);
  return {
    released_amount: amountOut(config, legs.released_amount, p.currency),
    refunded_amount: amountOut(config, legs.refunded_amount, p.currency),
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
