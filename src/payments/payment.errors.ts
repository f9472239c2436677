import { DomainError } from '../common/errors';
import type { PaymentStatus } from './job-payment.entity';

/** Somebody already moved the payment out of `escrowed`: the current status says who won. */
export const alreadySettled = (paymentId: string, status: PaymentStatus) =>
  new DomainError('PAYMENT_ALREADY_SETTLED', `Payment ${paymentId} is already ${status}`, {
    payment_id: paymentId,
    status,
  });

export const notEscrowed = (paymentId: string, status: PaymentStatus) =>
  new DomainError('PAYMENT_NOT_ESCROWED', `Payment ${paymentId} is ${status}, not escrowed`, {
    payment_id: paymentId,
    status,
  });

/** Maps a failed escrowed→X compare-and-set to the error that explains it. */
export function cannotSettle(paymentId: string, status: PaymentStatus): DomainError {
  return status === 'pending' || status === 'failed'
    ? notEscrowed(paymentId, status)
    : alreadySettled(paymentId, status);
}
