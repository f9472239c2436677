import type { Principal } from '../auth/api-keys';
import { DomainError, notFound, validationError } from '../common/errors';
import { DB_AMOUNT_SCALE, Money } from '../common/money';
import type { JobPayment, PaymentStatus } from './job-payment.entity';
import { cannotSettle } from './payment.errors';

/*
 * Who may release or refund what, as pure functions over the facts read under the
 * job's lock. The services call these; the SQL that moves the payment repeats the one
 * condition that makes it a compare-and-set (`status = 'escrowed'`), so a rule checked
 * here can never be raced past.
 */

export type SettleAction = 'release' | 'refund';

/** A request to settle one payment: one single call, or one item of a batch. */
export interface SettleAsk {
  payment_id: string;
  action: SettleAction;
  /** When given, must be the payment's job. */
  job_id?: string;
  reason?: string;
  /**
   * Release: what the miner is paid (> 0, at most the payment's amount, at most the
   * currency's scale); the rest goes back to the refund address in the same settlement.
   * Refund: when given, must be the payment's whole amount (a refund returns everything).
   */
  amount?: string;
}

/** The status a decided settlement moves an escrowed payment to. */
export const DECIDED_STATUS: Record<SettleAction, Extract<PaymentStatus, 'releasing' | 'refunding'>> = {
  release: 'releasing',
  refund: 'refunding',
};

/** The reason recorded when the caller gives none. */
export const DEFAULT_SETTLE_REASON: Record<SettleAction, string> = {
  release: 'release_requested',
  refund: 'refund_requested',
};

/** Job states in which work has started: past them a client can no longer take its money back. */
const WORK_STARTED = new Set(['running', 'completed']);

/** Clients see their own payments, admins every payment, miners none. */
export function canSeePayment(principal: Principal, payment: Pick<JobPayment, 'client_id'>): boolean {
  return principal.role === 'admin' || (principal.role === 'client' && payment.client_id === principal.id);
}

/**
 * Why `ask` must be refused, or undefined when the settlement may be decided. `payment`
 * is undefined when no such payment exists; `jobState` is its job's state under the job's
 * row lock. The checks run in the order a caller should learn about them: existence
 * (others' payments are 404, never 403), the job named, the amount, the payment's status,
 * then what the action itself needs.
 */
export function settlementRefusal(
  principal: Principal,
  ask: SettleAsk,
  payment: JobPayment | undefined,
  jobState: string | undefined,
  scale = DB_AMOUNT_SCALE,
): DomainError | undefined {
  if (!payment || !canSeePayment(principal, payment)) return notFound('payment', ask.payment_id);
  if (ask.job_id !== undefined && ask.job_id !== payment.job_id) {
    return new DomainError(
      'PAYMENT_JOB_MISMATCH',
      `Payment ${payment.payment_id} does not belong to job ${ask.job_id}`,
      { payment_job_id: payment.job_id },
    );
  }
  if (ask.amount !== undefined && ask.action === 'release') {
    const problem = releaseAmountProblem(ask.amount, payment.amount, scale);
    if (problem) {
      return validationError(`amount ${problem}`, { fields: { amount: [problem] } });
    }
  }
  if (ask.amount !== undefined && ask.action === 'refund' && !sameAmount(ask.amount, payment.amount)) {
    return validationError(`A refund returns the whole payment: amount must be ${payment.amount}`, {
      fields: { amount: [`must equal the payment's amount ${payment.amount}`] },
    });
  }
  if (payment.status !== 'escrowed') return cannotSettle(payment.payment_id, payment.status);
  if (ask.action === 'release' && !payment.payee_address) {
    return new DomainError('PAYMENT_NO_PAYEE', `Payment ${payment.payment_id} has no assigned miner to pay yet`);
  }
  if (ask.action === 'refund' && principal.role !== 'admin' && jobState !== undefined && WORK_STARTED.has(jobState)) {
    return new DomainError(
      'REFUND_NOT_ALLOWED',
      `Job ${payment.job_id} is ${jobState}; only an admin can refund it now`,
      { job_state: jobState },
    );
  }
  return undefined;
}

/**
 * Why `asked` cannot be what a release pays, or undefined: a plain decimal string with
 * at most `scale` decimals, greater than zero, at most the payment's `amount`.
 */
export function releaseAmountProblem(asked: unknown, amount: string, scale: number): string | undefined {
  if (typeof asked !== 'string' || !PLAIN_DECIMAL.test(asked)) {
    return 'must be a decimal string such as "0.0005" (no sign, exponent or spaces)';
  }
  const decimals = asked.includes('.') ? asked.length - asked.indexOf('.') - 1 : 0;
  if (decimals > scale) return `has ${decimals} decimal places; the currency allows at most ${scale}`;
  const value = new Money(asked);
  if (value.isZero()) return 'must be greater than zero';
  if (value.gt(new Money(amount))) return `must be at most the payment's amount ${amount}`;
  return undefined;
}

/**
 * What the decision records as released: the asked amount at the database's scale when a
 * release names one (the compare-and-set stores it, so every retry settles exactly that),
 * null for the whole amount (no `amount`) and for refunds.
 */
export function releasedAmountOf(ask: SettleAsk): string | null {
  if (ask.action !== 'release' || ask.amount === undefined) return null;
  return new Money(ask.amount).toFixed(DB_AMOUNT_SCALE);
}

const PLAIN_DECIMAL = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;

function sameAmount(asked: string, amount: string): boolean {
  try {
    return new Money(asked).eq(new Money(amount));
  } catch {
    return false;
  }
}
