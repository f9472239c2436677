import type { Principal } from '../auth/api-keys';
import type { JobPayment, PaymentStatus } from '../payments/job-payment.entity';

/**
 * Who sees which payments in the history, and what an event is called. Pure functions;
 * the repository's WHERE clauses mirror them.
 */

/**
 * Event types of the feed: the webhook event type names, the two in-between states, and
 * the two events that change no status (an escrow's extension, a failover to another
 * provider before anything was held).
 */
export const EVENT_TYPES = [
  'payment.created',
  'payment.escrowed',
  'payment.releasing',
  'payment.released',
  'payment.refunding',
  'payment.refunded',
  'payment.failed',
  'payment.escrow_extended',
  'payment.provider_changed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The audit rows of each type: a move to a status, or a same-status event by its reason. */
export const EVENT_TYPE_ROWS: Readonly<Record<EventType, { to: PaymentStatus } | { sameStatusReason: string }>> = {
  'payment.created': { to: 'pending' },
  'payment.escrowed': { to: 'escrowed' },
  'payment.releasing': { to: 'releasing' },
  'payment.released': { to: 'released' },
  'payment.refunding': { to: 'refunding' },
  'payment.refunded': { to: 'refunded' },
  'payment.failed': { to: 'failed' },
  'payment.escrow_extended': { sameStatusReason: 'escrow_extended' },
  'payment.provider_changed': { sameStatusReason: 'provider_failover' },
};

/**
 * The feed type of an audit row: a status change is named after the status it reaches; an
 * event that keeps the status, after its reason (so an extension is never a second
 * `payment.escrowed`, nor a failover a second `payment.created`).
 */
export function eventType(event: {
  from_status: PaymentStatus | null;
  to_status: PaymentStatus;
  reason: string | null;
}): EventType {
  if (event.from_status === event.to_status) {
    const same = EVENT_TYPES.find((t) => {
      const rows = EVENT_TYPE_ROWS[t];
      return 'sameStatusReason' in rows && rows.sameStatusReason === event.reason;
    });
    if (same) return same;
  }
  return event.to_status === 'pending' ? 'payment.created' : (`payment.${event.to_status}` as EventType);
}

/**
 * A receipt is readable by the payment's client, an admin, and the miner it was paid to
 * (once released to it). Everyone else gets 404, as for any payment they may not see.
 */
export function canReadReceipt(
  principal: Principal,
  payment: Pick<JobPayment, 'client_id' | 'miner_id' | 'status'>,
): boolean {
  if (principal.role === 'admin') return true;
  if (principal.role === 'client') return payment.client_id === principal.id;
  return payment.status === 'released' && payment.miner_id === principal.id;
}
