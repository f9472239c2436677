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
}
