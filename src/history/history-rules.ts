import type { Principal } from '../auth/api-keys';
import type { JobPayment, PaymentStatus } from '../payments/job-payment.entity';

/**
 * Who sees which payments in the history, and what an event is called. Pure functions;
 * the repository's WHERE clauses mirror them.
 */

/** Event types of the feed (the webhook event type names, plus the two in-between states). */
export const EVENT_TYPES = [
  'payment.created',
  'payment.escrowed',
  'payment.releasing',
  'payment.released',
  'payment.refunding',
  'payment.refunded',
  'payment.failed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The status an event of each type moves a payment to (`payment.created` is the only move to `pending`). */
export const EVENT_TYPE_STATUS: Readonly<Record<EventType, PaymentStatus>> = {
  'payment.created': 'pending',
  'payment.escrowed': 'escrowed',
  'payment.releasing': 'releasing',
  'payment.released': 'released',
  'payment.refunding': 'refunding',
  'payment.refunded': 'refunded',
  'payment.failed': 'failed',
};

/** The feed type of a status change: named after the status it reaches. */
export function eventType(toStatus: PaymentStatus): EventType {
  return toStatus === 'pending' ? 'payment.created' : (`payment.${toStatus}` as EventType);
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
