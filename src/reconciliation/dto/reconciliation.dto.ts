import { ApiProperty } from '@nestjs/swagger';
import { MISMATCH_KINDS, MismatchKind } from '../reconciliation-rules';

/** What the coordinator's row said when the mismatch was found. */
export class CoordinatorEscrowView {
  @ApiProperty({ example: 'escrowed' }) status: string;
  @ApiProperty({ example: '0.00100000' }) amount: string;
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-0000000000e1' }) escrow_id: string;
  @ApiProperty({ nullable: true, type: String, example: null }) transaction_hash: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) refund_transaction_hash: string | null;
  /** What the row says the miner got: null until released or refunded (the whole amount unless a partial release). */
  @ApiProperty({ nullable: true, type: String, example: null }) released_amount: string | null;
  /** What the row says went back to the client: null until released or refunded. */
  @ApiProperty({ nullable: true, type: String, example: null }) refunded_amount: string | null;
}

/** What the wallet daemon said about the escrow (its lookup answer). */
export class DaemonEscrowView {
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-0000000000e1' }) escrow_id: string;
  @ApiProperty({ nullable: true, type: String, example: '0193a5b0-7c1f-7000-8000-000000000001' })
  payment_id: string | null;
  @ApiProperty({ enum: ['held', 'released', 'refunded'], example: 'refunded' }) state: string;
  @ApiProperty({ example: '0.00100000' }) amount: string;
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({
    nullable: true,
    type: String,
    example: '9f2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a',
  })
  transaction_hash: string | null;
  @ApiProperty({ nullable: true, type: String, example: '0.00000000' }) released_amount: string | null;
  @ApiProperty({ nullable: true, type: String, example: '0.00100000' }) refunded_amount: string | null;
}

export class MismatchView {
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-000000000001' }) payment_id: string;
  /**
   * unknown_at_daemon, escrow_of_another_payment, amount_mismatch, settled_at_daemon_only,
   * held_at_daemon_final_here, outcome_mismatch, transaction_mismatch, legs_mismatch (README "Reconciliation").
   */
  @ApiProperty({ enum: MISMATCH_KINDS, example: 'settled_at_daemon_only' }) kind: MismatchKind;
  @ApiProperty({ type: CoordinatorEscrowView }) coordinator: CoordinatorEscrowView;
  /** Null when the daemon does not know the escrow. */
  @ApiProperty({ type: DaemonEscrowView, nullable: true }) daemon: DaemonEscrowView | null;
}

/** The last finished reconciliation pass (the same on every instance). */
export class ReconciliationReportView {
  /** When the last pass finished; null before the first. */
  @ApiProperty({ nullable: true, type: String, example: '2026-11-30T12:00:00.000Z' }) last_run_at: string | null;
  /** Payments compared: matched + repaired + mismatches. */
  @ApiProperty({ example: 1204 }) checked: number;
  @ApiProperty({ example: 1202 }) matched: number;
  /** Payments the coordinator had not recorded yet as the daemon settled them, recorded now (no money moved). */
  @ApiProperty({ example: 1 }) repaired: number;
  @ApiProperty({ type: [MismatchView] }) mismatches: MismatchView[];
}
