import { Column, Entity, PrimaryColumn } from 'typeorm';

export const PAYMENT_STATUSES = [
  'pending',
  'escrowed',
  'releasing',
  'released',
  'refunding',
  'refunded',
  'failed',
] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/**
 * A job's payment. Property names are the column names (rows come from raw SQL with
 * `RETURNING *`); amounts are the exact NUMERIC text, never a JS number.
 */
@Entity('job_payments')
export class JobPayment {
  @PrimaryColumn('uuid') payment_id: string;
  @Column('uuid') job_id: string;
  @Column('varchar', { length: 64 }) client_id: string;
  @Column('numeric', { precision: 20, scale: 8 }) amount: string;
  @Column('varchar', { length: 10 }) currency: string;
  @Column('varchar', { length: 16 }) status: PaymentStatus;
  /** What a release pays the miner, when less than the whole amount was asked for (NULL: the whole amount). */
  @Column('numeric', { precision: 20, scale: 8, nullable: true }) released_amount: string | null;
  @Column('varchar', { length: 16 }) payment_method: string;
  /** The payment provider (wallet daemon) its escrow is requested from; every call for it goes there. */
  @Column('varchar', { length: 64 }) provider_id: string;
  @Column('varchar', { length: 100, nullable: true }) escrow_id: string | null;
  @Column('varchar', { length: 100, nullable: true }) escrow_address: string | null;
  @Column('varchar', { length: 100 }) payer_address: string;
  @Column('varchar', { length: 100 }) refund_address: string;
  /** The miner and payout address, recorded when the job is dispatched. */
  @Column('varchar', { length: 64, nullable: true }) miner_id: string | null;
  @Column('varchar', { length: 100, nullable: true }) payee_address: string | null;
  @Column('varchar', { length: 128, nullable: true }) transaction_hash: string | null;
  @Column('varchar', { length: 128, nullable: true }) refund_transaction_hash: string | null;
  @Column('integer') escrow_timeout_seconds: number;
  @Column('text', { nullable: true }) settle_reason: string | null;
  @Column('varchar', { length: 64, nullable: true }) settled_by: string | null;
  @Column('text', { nullable: true }) failure_reason: string | null;
  /** When the wallet daemon confirmed the settling transaction. */
  @Column('timestamptz', { nullable: true }) verified_at: Date | null;
  @Column('integer') attempts: number;
  @Column('timestamptz', { nullable: true }) next_attempt_at: Date | null;
  @Column('text', { nullable: true }) last_error: string | null;
  @Column('timestamptz') created_at: Date;
  @Column('timestamptz') updated_at: Date;
  @Column('timestamptz', { nullable: true }) escrowed_at: Date | null;
  @Column('timestamptz', { nullable: true }) released_at: Date | null;
  @Column('timestamptz', { nullable: true }) refunded_at: Date | null;
  @Column('timestamptz') expires_at: Date;
}

/** Append-only audit trail: one row per status change. */
@Entity('payment_events')
export class PaymentEvent {
  @PrimaryColumn('bigint') event_id: string;
  @Column('uuid') payment_id: string;
  @Column('varchar', { length: 16, nullable: true }) from_status: PaymentStatus | null;
  @Column('varchar', { length: 16 }) to_status: PaymentStatus;
  @Column('text', { nullable: true }) reason: string | null;
  @Column('varchar', { length: 64 }) actor: string;
  @Column('jsonb', { nullable: true }) details: Record<string, unknown> | null;
  @Column('timestamptz') created_at: Date;
}
