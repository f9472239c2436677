import { Injectable } from '@nestjs/common';
import type { JobPayment } from '../payments/job-payment.entity';
import {
  BatchItemResult,
  CreateEscrowRequest,
  EscrowHold,
  EscrowState,
  SettleRequest,
  WalletDaemonClient,
  WalletDaemonRejected,
  WalletDaemonUnavailable,
} from '../wallet-daemon-client/wallet-daemon.client';

/** Idempotency keys toward the daemon. Release and refund share one key, so at most one can apply. */
export const createKey = (paymentId: string) => `${paymentId}:create`;
export const settleKey = (paymentId: string) => `${paymentId}:settle`;

/**
 * The escrow hold at the wallet daemon: the requests and their idempotency keys.
 * Payments decides *what* happens; this module carries it out at the daemon. Daemon calls
 * here are never made inside a database transaction. The coordinator's record of each
 * escrow (`payment_escrows`) is written by the statement that moves its payment
 * (`JobPaymentsRepository`), so a status change and its escrow record commit together.
 */
@Injectable()
export class EscrowService {
  constructor(private readonly daemon: WalletDaemonClient) {}

  /** Asks the daemon to hold the payment's amount (safe to repeat: same key, same hold). */
  hold(payment: JobPayment): Promise<EscrowHold> {
    return this.daemon.createEscrow(holdRequest(payment), createKey(payment.payment_id));
  }

  /**
   * Asks the daemon to hold many payments in one call (one daemon commit). Each item keeps
   * its own `<payment_id>:create` key, so it is the very same hold as the single call.
   * Returns, per payment in order, its hold or why it was not held (402 is
   * `WalletDaemonRejected.insufficientFunds`). A daemon without the route throws
   * WalletDaemonRejected 404/405 for the whole call.
   */
  async holdBatch(payments: JobPayment[]): Promise<HoldOutcome[]> {
    const results = await this.daemon.createEscrows(
      payments.map((p) => ({ ...holdRequest(p), idempotency_key: createKey(p.payment_id) })),
    );
    return results.map((result) => {
      const { escrow_id, address, transaction_hash, expires_at } = result.body;
      if (result.status < 300 && escrow_id && address && transaction_hash && expires_at) {
        return { hold: { escrow_id, address, transaction_hash, expires_at } };
      }
      return { error: itemError(result, 'create-batch') };
    });
  }

  /** Carries out the decided outcome (`releasing` → payee, `refunding` → refund address). */
  async settle(payment: JobPayment): Promise<string> {
    const item = settleItem(payment);
    const { idempotency_key: key } = item;
    const answer =
      item.action === 'release'
        ? await this.daemon.releaseEscrow({ ...item.request, payee: item.payee }, key)
        : await this.daemon.refundEscrow({ ...item.request, refund_address: item.refund_address }, key);
    return answer.transaction_hash;
  }

  /**
   * Carries out many decided outcomes in one daemon call (one daemon commit). Each item
   * keeps its own `<payment_id>:settle` key, so it is the very same settlement as the
   * single call. Returns, per payment, its transaction hash or why it was not settled.
   */
  async settleBatch(payments: JobPayment[]): Promise<BatchOutcome[]> {
    const items = payments.map(settleItem);
    const results = await this.daemon.settleEscrows(
      items.map((i) =>
        i.action === 'release'
          ? { ...i.request, idempotency_key: i.idempotency_key, action: 'release' as const, payee: i.payee }
          : {
              ...i.request,
              idempotency_key: i.idempotency_key,
              action: 'refund' as const,
              refund_address: i.refund_address,
            },
      ),
    );
    return results.map((result) =>
      result.status < 300 && result.body.transaction_hash
        ? { transactionHash: result.body.transaction_hash }
        : { error: itemError(result, 'settle-batch') },
    );
  }

  /** What the daemon says happened to the payment's escrow (for reconciliation). */
  inspect(payment: JobPayment): Promise<EscrowState> {
    if (!payment.escrow_id) throw new Error(`payment ${payment.payment_id} has no escrow`);
    return this.daemon.getEscrow(payment.escrow_id);
  }
}

export type BatchOutcome =
  { transactionHash: string; error?: undefined } | { error: WalletDaemonRejected | WalletDaemonUnavailable };
export type HoldOutcome =
  { hold: EscrowHold; error?: undefined } | { error: WalletDaemonRejected | WalletDaemonUnavailable };

/**
 * Why a batch item did not succeed, as its single call would have thrown: a 4xx is a
 * definitive no; a 5xx (or a success without what it must carry) leaves it unknown.
 */
function itemError(result: BatchItemResult<unknown>, route: string): WalletDaemonRejected | WalletDaemonUnavailable {
  const { status, body } = result;
  if (status >= 500 || status < 400)
    return new WalletDaemonUnavailable(`wallet daemon ${route} item answered ${status}`);
  return new WalletDaemonRejected(status, body.code ?? 'REJECTED', body.message ?? `wallet daemon answered ${status}`);
}

/** The daemon create request that holds a payment's amount. */
function holdRequest(payment: JobPayment): CreateEscrowRequest {
  return {
    payment_id: payment.payment_id,
    amount: payment.amount,
    currency: payment.currency,
    payer: payment.payer_address,
    timeout_seconds: payment.escrow_timeout_seconds,
  };
}

/** The daemon request that carries out a payment's decided outcome. */
function settleItem(payment: JobPayment) {
  if (!payment.escrow_id || !payment.escrow_address) throw new Error(`payment ${payment.payment_id} has no escrow`);
  const request: SettleRequest = {
    escrow_id: payment.escrow_id,
    address: payment.escrow_address,
    amount: payment.amount,
    reason: payment.settle_reason ?? payment.status,
  };
  const idempotency_key = settleKey(payment.payment_id);
  return payment.status === 'releasing'
    ? { action: 'release' as const, request, idempotency_key, payee: payment.payee_address as string }
    : { action: 'refund' as const, request, idempotency_key, refund_address: payment.refund_address };
}
