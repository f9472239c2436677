import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsDefined,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  IsUUID,
  Length,
  MaxLength,
  Min,
} from 'class-validator';
import { PAYMENT_STATUSES } from '../job-payment.entity';

export class CreatePaymentDto {
  /** An existing queued job of yours that has no payment yet. */
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' })
  @IsUUID()
  job_id: string;

  /** Decimal string (preferred) or JSON number; at most the currency's scale. */
  @ApiProperty({ oneOf: [{ type: 'string' }, { type: 'number' }], example: '0.001' })
  @IsDefined()
  amount: string | number;

  @ApiPropertyOptional({ example: 'BTC' })
  @IsOptional()
  @IsString()
  @Length(2, 10)
  currency?: string;

  @ApiPropertyOptional({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  payer_address?: string;

  @ApiPropertyOptional({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  refund_address?: string;

  @ApiPropertyOptional({ example: 3600 })
  @IsOptional()
  @IsInt()
  @Min(1)
  escrow_timeout_seconds?: number;
}

export class SettlePaymentDto {
  /** When given, must be the payment's job (409 otherwise). */
  @ApiPropertyOptional({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  job_id?: string;

  @ApiPropertyOptional({ example: 'Job completed successfully' })
  @IsOptional()
  @IsString()
  @MaxLength(500)
  reason?: string;
}

/** `POST /v1/payments/{id}/release`: the settle body, and optionally how much the miner is paid. */
export class ReleasePaymentDto extends SettlePaymentDto {
  /**
   * Partial release: what the miner is paid, a decimal string > 0, at most the payment's
   * amount, at most the currency's scale. The rest goes back to the refund address in the
   * same settlement. Without it the whole amount is released.
   */
  @ApiPropertyOptional({ example: '0.0004' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  amount?: string;
}

export class PaymentView {
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-000000000001' }) payment_id: string;
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }) job_id: string;
  @ApiProperty({ example: 'demo-client' }) client_id: string;
  @ApiProperty({ example: '0.00100000' }) amount: string;
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({ enum: PAYMENT_STATUSES, example: 'escrowed' }) status: string;
  @ApiProperty({ example: 'escrow' }) payment_method: string;
  @ApiProperty({ nullable: true, type: String }) escrow_id: string | null;
  @ApiProperty({ nullable: true, type: String }) escrow_address: string | null;
  @ApiProperty() payer_address: string;
  @ApiProperty() refund_address: string;
  @ApiProperty({ nullable: true, type: String }) payee_address: string | null;
  @ApiProperty({ nullable: true, type: String }) miner_id: string | null;
  /** The payment provider (wallet daemon) its escrow is requested from and held at; `local` with a single daemon (README "Providers and routing"). */
  @ApiProperty({ example: 'local' }) provider_id: string;
  /**
   * Paid to the miner: once `released`, the amount (or, after a partial release, the part
   * released), zero once `refunded`, null before the outcome is final.
   */
  @ApiProperty({ nullable: true, type: String, example: '0.00100000' }) released_amount: string | null;
  /**
   * Returned to the client: the amount once `refunded`; once `released`, what a partial
   * release sent back (zero after a whole release); null before the outcome is final.
   */
  @ApiProperty({ nullable: true, type: String, example: '0.00000000' }) refunded_amount: string | null;
  @ApiProperty({ nullable: true, type: String }) transaction_hash: string | null;
  @ApiProperty({ nullable: true, type: String }) refund_transaction_hash: string | null;
  @ApiProperty() created_at: string;
  @ApiProperty() updated_at: string;
  @ApiProperty({ nullable: true, type: String }) escrowed_at: string | null;
  @ApiProperty({ nullable: true, type: String }) released_at: string | null;
  @ApiProperty({ nullable: true, type: String }) refunded_at: string | null;
  @ApiProperty() expires_at: string;
  @ApiProperty({ nullable: true, type: String }) failure_reason: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'Why it was released or refunded' }) settle_reason:
    string | null;
}

export class PaymentEventView {
  @ApiProperty({ nullable: true, enum: PAYMENT_STATUSES }) from: string | null;
  @ApiProperty({ enum: PAYMENT_STATUSES }) to: string;
  @ApiProperty({ nullable: true, type: String, example: 'job_completed' }) reason: string | null;
  @ApiProperty({ example: 'miner-1' }) actor: string;
  @ApiProperty({ nullable: true, type: Object }) details: Record<string, unknown> | null;
  @ApiProperty() at: string;
}

export class PaymentEventsView {
  @ApiProperty({ type: [PaymentEventView] }) items: PaymentEventView[];
}

export class ReceiptSignatureView {
  @ApiProperty({ example: 'Ed25519' }) alg: string;
  @ApiProperty({ example: '3f2a9c1b0d4e5f60' }) key_id: string;
  @ApiProperty({ description: 'base64url Ed25519 signature over the RFC 8785 canonical JSON of the other fields' })
  sig: string;
}

export class ReceiptView {
  @ApiProperty() receipt_id: string;
  @ApiProperty() payment_id: string;
  @ApiProperty() job_id: string;
  @ApiProperty() client_id: string;
  @ApiProperty({ nullable: true, type: String }) miner_id: string | null;
  @ApiProperty({ example: '0.00100000' }) amount: string;
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({ enum: PAYMENT_STATUSES }) status: string;
  @ApiProperty() payer: string;
  @ApiProperty({ nullable: true, type: String }) payee_address: string | null;
  @ApiProperty({ nullable: true, type: String }) refund_address: string | null;
  /** Paid to the miner (the payment's `released_amount`); null before a final outcome. */
  @ApiProperty({ nullable: true, type: String, example: '0.00040000' }) released_amount: string | null;
  /** Returned to the client (the payment's `refunded_amount`); null before a final outcome. */
  @ApiProperty({ nullable: true, type: String, example: '0.00060000' }) refunded_amount: string | null;
  @ApiProperty({ nullable: true, type: String }) transaction_hash: string | null;
  @ApiProperty({ nullable: true, type: String }) refund_transaction_hash: string | null;
  @ApiProperty() created_at: string;
  @ApiProperty({ nullable: true, type: String }) escrowed_at: string | null;
  @ApiProperty({ nullable: true, type: String }) released_at: string | null;
  @ApiProperty({ nullable: true, type: String }) refunded_at: string | null;
  @ApiProperty({ description: 'True only when the wallet daemon confirmed the settling transaction' })
  verified: boolean;
  @ApiProperty({ nullable: true, type: String }) verified_at: string | null;
  @ApiProperty({ type: ReceiptSignatureView }) signature: ReceiptSignatureView;
}

export class ReceiptKeyView {
  @ApiProperty() key_id: string;
  @ApiProperty({ example: 'Ed25519' }) alg: string;
  @ApiProperty() public_key_pem: string;
}

export class ReceiptKeysView {
  @ApiProperty({ type: [ReceiptKeyView] }) keys: ReceiptKeyView[];
}

export class PaymentBatchDto {
  /** 1–500 settlements, each `payment_id` at most once; each item is validated on its own. */
  @ApiProperty({
    type: 'array',
    items: { type: 'object' },
    minItems: 1,
    maxItems: 500,
    example: [
      { payment_id: '0193a5b0-7c1f-7000-8000-000000000001', action: 'release', reason: 'work accepted' },
      { payment_id: '0193a5b0-7c1f-7000-8000-000000000003', action: 'release', amount: '0.0004' },
      {
        payment_id: '0193a5b0-7c1f-7000-8000-000000000002',
        action: 'refund',
        job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c',
      },
    ],
  })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(500)
  @IsObject({ each: true })
  items: Record<string, unknown>[];
}

/** One item of `POST /v1/payments/batch`: the single release/refund call's path and body. */
export class PaymentBatchItemDto extends SettlePaymentDto {
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-000000000001' })
  @IsString()
  @MaxLength(100)
  payment_id: string;

  @ApiProperty({ enum: ['release', 'refund'] })
  @IsIn(['release', 'refund'])
  action: 'release' | 'refund';

  /**
   * Release: what the miner is paid (a decimal string, > 0, at most the payment's amount, at
   * most the currency's scale); the rest is refunded in the same settlement. Refund: when
   * given, must equal the payment's amount.
   */
  @ApiPropertyOptional({ example: '0.0004' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  amount?: string;
}

export class BatchItemErrorView {
  @ApiProperty({ example: 409 }) status_code: number;
  @ApiProperty({ example: 'PAYMENT_ALREADY_SETTLED' }) code: string;
  @ApiProperty() message: string;
  @ApiProperty({ type: Object }) details: Record<string, unknown>;
  @ApiProperty() request_id: string;
}

export class PaymentBatchItemView {
  @ApiProperty({ example: 0 }) index: number;
  @ApiProperty({ nullable: true, type: String }) payment_id: string | null;
  @ApiProperty({ nullable: true, type: String, enum: ['release', 'refund'] }) action: string | null;
  @ApiProperty({ example: 200 }) status_code: number;
  @ApiPropertyOptional({ type: PaymentView }) payment?: PaymentView;
  @ApiPropertyOptional({ type: BatchItemErrorView }) error?: BatchItemErrorView;
}

export class PaymentBatchView {
  @ApiProperty({ type: [PaymentBatchItemView] }) items: PaymentBatchItemView[];
  @ApiProperty({ example: 2 }) succeeded: number;
  @ApiProperty({ example: 0 }) failed: number;
}
