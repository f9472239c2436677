import { Column, Entity, PrimaryColumn } from 'typeorm';

/** The coordinator's record of an escrow hold at the wallet daemon. */
@Entity('payment_escrows')
export class PaymentEscrow {
  @PrimaryColumn('uuid') payment_id: string;
  @Column('varchar', { length: 100 }) escrow_id: string;
  @Column('numeric', { precision: 20, scale: 8 }) amount: string;
  @Column('varchar', { length: 10 }) currency: string;
  @Column('varchar', { length: 100 }) address: string;
  @Column('boolean') is_active: boolean;
  @Column('boolean') is_released: boolean;
  @Column('boolean') is_refunded: boolean;
  @Column('varchar', { length: 128, nullable: true }) create_transaction_hash: string | null;
  @Column('timestamptz') created_at: Date;
  @Column('timestamptz') updated_at: Date;
  @Column('timestamptz', { nullable: true }) released_at: Date | null;
  @Column('timestamptz', { nullable: true }) refunded_at: Date | null;
}
