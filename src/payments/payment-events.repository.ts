// Owns the payment_events table.
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { PaymentEvent } from './job-payment.entity';

/**
 * The payment's audit trail, append-only (a trigger refuses UPDATE and DELETE). Reads are
 * here; each event is appended by the very statement that moves its payment (see
 * `JobPaymentsRepository`: the `logged` CTE of every transition), so a change and its
 * event commit together or not at all, and a trail can never miss a change.
 */
@Injectable()
export class PaymentEventsRepository {
  /** A payment's events, oldest first. */
  listForPayment(sql: Sql, paymentId: string): Promise<PaymentEvent[]> {
    return sql.rows<PaymentEvent>(`SELECT * FROM payment_events WHERE payment_id = $1 ORDER BY event_id`, [paymentId]);
  }
}
