import { Injectable } from '@nestjs/common';
import { Money } from '../common/money';
import type { JobPayment } from '../payments/job-payment.entity';
import { PaymentProviders } from '../providers/payment-providers.service';
import {
  BatchItemResult,
  CreateEscrowRequest,
  EscrowHold,
  EscrowState,
  LOOKUP_MAX_IDS,
  SettleRequest,
  WalletDaemonRejected,
  WalletDaemonUnavailable,
} from '../wallet-daemon-client/wallet-daemon.client';

/** Idempotency keys toward the daemon. Release and refund share one key, so at most one can apply. */
export const createKey = (paymentId: string) => `${paymentId}:create`;
export const settleKey = (paymentId: string) => `${paymentId}:settle`;
/** One key per recorded expiry: a repeat of one extension replays, a later extension is a new call. */
export const extendKey = (paymentId: string, expiresAt: string) => `${paymentId}:extend:${expiresAt}`;

/**
 * The escrow hold at the wallet daemon: the requests and their idempotency keys.
 * Payments decides *what* happens; this module carries it out at the daemon. Daemon calls
 * here are never made inside a database transaction. The coordinator's record of each
 * escrow (`payment_escrows`) is written by the statement that moves its payment
 * (`JobPaymentsRepository`), so a status change and its escrow record commit together.
 *
 * Every call goes to the payment's own provider (`provider_id`, README "Providers and
 * routing") through its circuit breaker; a batch call takes payments of one provider.
 */
@Injectable()
export class EscrowService {
  constructor(private readonly providers: PaymentProviders) {}

  /** Asks the daemon to hold the payment's amount (safe to repeat: same key, same hold). */
  hold(payment: JobPayment): Promise<EscrowHold> {
    return this.providers.call(payment.provider_id, 'escrow_create', (daemon) =>
      daemon.createEscrow(holdRequest(payment), createKey(payment.payment_id)),
    );
  }

  /**
   * Asks the daemon to hold many payments in one call (one daemon commit). Each item keeps
   * its own `<payment_id>:create` key, so it is the very same hold as the single call.
   * Returns, per payment in order, its hold or why it was not held (402 is
   * `WalletDaemonRejected.insufficientFunds`). A daemon without the route throws
   * WalletDaemonRejected 404/405 for the whole call.
   */
  async holdBatch(payments: JobPayment[]): Promise<HoldOutcome[]> {
    const results = await this.providers.call(oneProvider(payments), 'escrow_create_batch', (daemon) =>
      daemon.createEscrows(payments.map((p) => ({ ...holdRequest(p), idempotency_key: createKey(p.payment_id) }))),
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
    const answer = await this.providers.call(payment.provider_id, `escrow_${item.action}`, (daemon) =>
      item.action === 'release'
        ? daemon.releaseEscrow({ ...item.request, payee: item.payee, ...item.refundLeg }, key)
        : daemon.refundEscrow({ ...item.request, refund_address: item.refund_address }, key),
    );
    return answer.transaction_hash;
  }

  /**
   * Carries out many decided outcomes in one daemon call (one daemon commit). Each item
   * keeps its own `<payment_id>:settle` key, so it is the very same settlement as the
   * single call. Returns, per payment, its transaction hash or why it was not settled.
   */
  async settleBatch(payments: JobPayment[]): Promise<BatchOutcome[]> {
    const items = payments.map(settleItem);
    const results = await this.providers.call(oneProvider(payments), 'escrow_settle_batch', (daemon) =>
      daemon.settleEscrows(
        items.map((i) =>
          i.action === 'release'
            ? {
                ...i.request,
                idempotency_key: i.idempotency_key,
                action: 'release' as const,
                payee: i.payee,
                ...i.refundLeg,
              }
            : {
                ...i.request,
                idempotency_key: i.idempotency_key,
                action: 'refund' as const,
                refund_address: i.refund_address,
              },
        ),
      ),
    );
    return results.map((result) =>
      result.status < 300 && result.body.transaction_hash
        ? { transactionHash: result.body.transaction_hash }
        : { error: itemError(result, 'settle-batch') },
    );
  }

  /**
   * What the daemon holds for these payments' escrows, by escrow id (reconciliation): one
   * read per LOOKUP_MAX_IDS escrows; an escrow the daemon does not know is absent. The one
   * place reconciliation talks to the daemon.
   */
  async lookup(payments: Pick<JobPayment, 'escrow_id' | 'provider_id'>[]): Promise<Map<string, EscrowState>> {
    const found = new Map<string, EscrowState>();
    // Each escrow is asked of the provider that holds it.
    for (const provider of new Set(payments.map((p) => p.provider_id))) {
      const ids = [
        ...new Set(payments.flatMap((p) => (p.escrow_id && p.provider_id === provider ? [p.escrow_id] : []))),
      ];
      for (let i = 0; i < ids.length; i += LOOKUP_MAX_IDS) {
        const batch = ids.slice(i, i + LOOKUP_MAX_IDS);
        for (const escrow of await this.providers.call(provider, 'escrow_lookup', (daemon) =>
          daemon.lookupEscrows(batch),
        ))
          found.set(escrow.escrow_id, escrow);
      }
    }
    return found;
  }

  /**
   * Brings the daemon's record of the escrow's expiry up to the payment's recorded
   * `expires_at` (an extension decided and committed first). Key
   * `<payment_id>:extend:<expires_at>`, so the request, the re-drive and any retry send the same call.
   */
  async extend(payment: JobPayment): Promise<void> {
    if (!payment.escrow_id) throw new Error(`payment ${payment.payment_id} has no escrow`);
    const expiresAt = new Date(payment.expires_at).toISOString();
    const escrowId = payment.escrow_id;
    await this.providers.call(payment.provider_id, 'escrow_extend', (daemon) =>
      daemon.extendEscrow({ escrow_id: escrowId, expires_at: expiresAt }, extendKey(payment.payment_id, expiresAt)),
    );
  }

  /** What the daemon says happened to the payment's escrow (for reconciliation). */
  inspect(payment: JobPayment): Promise<EscrowState> {
    if (!payment.escrow_id) throw new Error(`payment ${payment.payment_id} has no escrow`);
    const escrowId = payment.escrow_id;
    return this.providers.call(payment.provider_id, 'escrow_get', (daemon) => daemon.getEscrow(escrowId));
  }
}

/** The one provider of a batch call's payments (callers group by provider). */
function oneProvider(payments: Pick<JobPayment, 'provider_id'>[]): string {
  const providers = new Set(payments.map((p) => p.provider_id));
  if (providers.size !== 1)
    throw new Error(`a daemon batch call takes payments of one provider, got ${providers.size}`);
  return payments[0].provider_id;
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
  const releasing = payment.status === 'releasing';
  // A partial release (recorded with the decision): the payee gets `released_amount`, the
  // refund address the rest, in the one settlement. Otherwise the request is as it always was.
  const partial = releasing && payment.released_amount !== null && !sameAmount(payment.released_amount, payment.amount);
  const request: SettleRequest = {
    escrow_id: payment.escrow_id,
    address: payment.escrow_address,
    amount: partial ? (payment.released_amount as string) : payment.amount,
    reason: payment.settle_reason ?? payment.status,
  };
  const idempotency_key = settleKey(payment.payment_id);
  const refundLeg = partial ? { refund_address: payment.refund_address } : {};
  return releasing
    ? { action: 'release' as const, request, idempotency_key, payee: payment.payee_address as string, refundLeg }
    : { action: 'refund' as const, request, idempotency_key, refund_address: payment.refund_address };
}

function sameAmount(a: string, b: string): boolean {
  return new Money(a).eq(new Money(b));
}
