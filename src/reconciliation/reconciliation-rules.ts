import { Money } from '../common/money';
import type { PaymentStatus } from '../payments/job-payment.entity';
import type { EscrowState } from '../wallet-daemon-client/wallet-daemon.client';

/**
 * Reconciliation's one rule: what a coordinator payment and the daemon's escrow say
 * together. Pure; the worker reads both sides and acts on the verdict. Money is never
 * moved on a verdict: `repair` only records at the coordinator what the daemon already
 * did; everything else that disagrees is a mismatch for an operator.
 */

/** The coordinator's side, as its row says (amounts exact decimal strings). */
export interface CoordinatorSide {
  payment_id: string;
  status: PaymentStatus;
  amount: string;
  currency: string;
  escrow_id: string;
  transaction_hash: string | null;
  refund_transaction_hash: string | null;
  /** What a release pays the miner when the row records it (partial release; null: the whole amount). */
  released_amount?: string | null;
  refunded_amount?: string | null;
}

/**
 * Why the two books disagree (README "Reconciliation"):
 * - `unknown_at_daemon` — the coordinator names an escrow the daemon does not know;
 * - `escrow_of_another_payment` — the daemon's escrow was created for another payment;
 * - `amount_mismatch` — the escrow's amount or currency differs;
 * - `settled_at_daemon_only` — released/refunded at the daemon, still `escrowed` here;
 * - `held_at_daemon_final_here` — still held at the daemon, final (released/refunded/failed) here;
 * - `outcome_mismatch` — one side released, the other refunded (or decided to);
 * - `transaction_mismatch` — same outcome, another settling transaction hash (or none);
 * - `legs_mismatch` — same outcome, other amounts paid to the payee and back to the client.
 */
export const MISMATCH_KINDS = [
  'unknown_at_daemon',
  'escrow_of_another_payment',
  'amount_mismatch',
  'settled_at_daemon_only',
  'held_at_daemon_final_here',
  'outcome_mismatch',
  'transaction_mismatch',
  'legs_mismatch',
] as const;
export type MismatchKind = (typeof MISMATCH_KINDS)[number];

export type Outcome = 'released' | 'refunded';

export type Verdict =
  | { verdict: 'matched' }
  /** The daemon settled the decided outcome and the coordinator has not recorded it yet: record it. */
  | { verdict: 'repair'; outcome: Outcome; transactionHash: string }
  | { verdict: 'mismatch'; kind: MismatchKind };

const MATCHED: Verdict = { verdict: 'matched' };
const mismatch = (kind: MismatchKind): Verdict => ({ verdict: 'mismatch', kind });

/** The outcome the coordinator decided or recorded; null while the money should still be held. */
export function coordinatorOutcome(status: PaymentStatus): { outcome: Outcome; final: boolean } | null {
  switch (status) {
    case 'releasing':
      return { outcome: 'released', final: false };
    case 'refunding':
      return { outcome: 'refunded', final: false };
    case 'released':
      return { outcome: 'released', final: true };
    // A failed payment with an escrow is a late hold the coordinator refunded.
    case 'refunded':
    case 'failed':
      return { outcome: 'refunded', final: true };
    default:
      return null;
  }
}

/** One payment against its escrow at the daemon (undefined: the daemon does not know it). */
export function classify(c: CoordinatorSide, d: EscrowState | undefined): Verdict {
  if (!d) return mismatch('unknown_at_daemon');
  if (d.payment_id !== undefined && d.payment_id !== c.payment_id) return mismatch('escrow_of_another_payment');
  if (d.currency !== c.currency || !new Money(d.amount).eq(c.amount)) return mismatch('amount_mismatch');

  const decided = coordinatorOutcome(c.status);
  if (!decided) return d.state === 'held' ? MATCHED : mismatch('settled_at_daemon_only');
  if (d.state === 'held') return decided.final ? mismatch('held_at_daemon_final_here') : MATCHED; // in flight: the re-drive carries it out
  if (d.state !== decided.outcome) return mismatch('outcome_mismatch');
  if (!legsAgree(c, d, decided.outcome)) return mismatch('legs_mismatch');
  if (!d.transaction_hash) return mismatch('transaction_mismatch');
  if (!decided.final) return { verdict: 'repair', outcome: decided.outcome, transactionHash: d.transaction_hash };
  const recorded = decided.outcome === 'released' ? c.transaction_hash : c.refund_transaction_hash;
  return recorded === d.transaction_hash ? MATCHED : mismatch('transaction_mismatch');
}

/**
 * What each leg should have paid: the row's own figures when it records them, else the
 * whole amount to the outcome's side. Compared only when the daemon reports its legs.
 */
function legsAgree(c: CoordinatorSide, d: EscrowState, outcome: Outcome): boolean {
  if (d.released_amount == null || d.refunded_amount == null) return true;
  const released = new Money(outcome === 'released' ? (c.released_amount ?? c.amount) : '0');
  // A release of less than the whole amount refunds the rest in the same settlement.
  const refunded = c.refunded_amount != null ? new Money(c.refunded_amount) : new Money(c.amount).minus(released);
  return new Money(d.released_amount).eq(released) && new Money(d.refunded_amount).eq(refunded);
}
