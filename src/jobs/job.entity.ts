import { Column, Entity, PrimaryColumn } from 'typeorm';

export const JOB_STATES = ['queued', 'running', 'completed', 'failed', 'canceled', 'expired'] as const;
export type JobState = (typeof JOB_STATES)[number];
/** States a job never leaves. */
export const FINAL_JOB_STATES: readonly JobState[] = ['completed', 'failed', 'canceled', 'expired'];

/**
 * A client's job. Property names are the column names, so rows read with raw SQL
 * (`RETURNING *`) have this same shape. The schema itself is in the migrations.
 */
@Entity('job')
export class Job {
  @PrimaryColumn('uuid') job_id: string;
  @Column('varchar', { length: 64 }) client_id: string;
  @Column('varchar', { length: 16 }) state: JobState;
  @Column('jsonb') payload: Record<string, unknown>;
  @Column('jsonb') constraints: Record<string, unknown>;
  @Column('integer') ttl_seconds: number;
  @Column('timestamptz') requested_at: Date;
  /** The effective deadline: the earlier of the TTL and the payment's escrow expiry. */
  @Column('timestamptz') expires_at: Date;
  @Column('varchar', { length: 64, nullable: true }) assigned_miner_id: string | null;
  @Column('timestamptz', { nullable: true }) started_at: Date | null;
  @Column('timestamptz', { nullable: true }) finished_at: Date | null;
  @Column('jsonb', { nullable: true }) result: unknown;
  @Column('jsonb', { nullable: true }) metrics: Record<string, unknown> | null;
  @Column('text', { nullable: true }) error: string | null;
  @Column('uuid', { nullable: true }) payment_id: string | null;
  /** Mirrored from job_payments by a trigger in the same statement. */
  @Column('varchar', { length: 16, nullable: true }) payment_status: string | null;
  /** Exact NUMERIC text as PostgreSQL returns it; arithmetic goes through `Money`. */
  @Column('numeric', { precision: 20, scale: 8, nullable: true }) payment_amount: string | null;
  @Column('varchar', { length: 10, nullable: true }) payment_currency: string | null;
  @Column('timestamptz') updated_at: Date;
}

@Entity('miner')
export class Miner {
  @PrimaryColumn('varchar', { length: 64 }) miner_id: string;
  @Column('varchar', { length: 100 }) payout_address: string;
  @Column('timestamptz') registered_at: Date;
  @Column('timestamptz') updated_at: Date;
}
