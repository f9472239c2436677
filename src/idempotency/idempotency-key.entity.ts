import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A stored first answer to a POST, replayed for retries with the same key. */
@Entity('idempotency_keys')
export class IdempotencyKey {
  @PrimaryColumn('varchar', { length: 64 }) principal_id: string;
  @PrimaryColumn('varchar', { length: 8 }) method: string;
  @PrimaryColumn('varchar', { length: 300 }) path: string;
  @PrimaryColumn('varchar', { length: 255 }) key: string;
  @Column('char', { length: 64 }) request_hash: string;
  @Column('integer', { nullable: true }) status_code: number | null;
  @Column('jsonb', { nullable: true }) response_body: unknown;
  @Column('timestamptz') created_at: Date;
  @Column('timestamptz', { nullable: true }) completed_at: Date | null;
  @Column('timestamptz') expires_at: Date;
  /** Fencing token of the attempt that holds the claim; a takeover replaces it. */
  @Column('uuid', { nullable: true }) claim_token: string | null;
  /** Until then the claim is the running attempt's; after it, a retry may take it over. */
  @Column('timestamptz', { nullable: true }) locked_until: Date | null;
  /** What the request's first write committed (e.g. `{job_id}`), so a takeover resumes from it. */
  @Column('jsonb', { nullable: true }) recovery: Record<string, unknown> | null;
}
