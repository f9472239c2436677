import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { PageQuery } from '../../common/page.query';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsDefined,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Length,
  Min,
  MaxLength,
} from 'class-validator';
import { JOB_STATES } from '../job.entity';
import { PAYMENT_STATUSES } from '../../payments/job-payment.entity';
import { BatchItemErrorView } from '../../payments/dto/payment.dto';

export class CreateJobDto {
  /** What the miner runs. */
  @ApiProperty({ example: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } } })
  @IsDefined()
  @IsObject()
  payload: Record<string, unknown>;

  /** Placement constraints for miners. */
  @ApiPropertyOptional({ example: {} })
  @IsOptional()
  @IsObject()
  constraints?: Record<string, unknown>;

  /** Seconds until a job not yet completed expires (default 900). */
  @ApiPropertyOptional({ example: 900, minimum: 1 })
  @IsOptional()
  @IsInt()
  @Min(1)
  ttl_seconds?: number;

  /** Amount to escrow, as a decimal string (preferred) or a JSON number; at most the currency's scale. */
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'number' }], example: '0.001' })
  @IsOptional()
  payment_amount?: string | number;

  /** Defaults to the configured default currency. */
  @ApiPropertyOptional({ example: 'BTC' })
  @IsOptional()
  @IsString()
  @Length(2, 10)
  payment_currency?: string;

  /** Defaults to the client's configured wallet address. */
  @ApiPropertyOptional({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  payer_address?: string;

  /** Defaults to the payer address. */
  @ApiPropertyOptional({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  refund_address?: string;

  /** Seconds the escrow is held before it is refunded automatically (default 3600). */
  @ApiPropertyOptional({ example: 3600 })
  @IsOptional()
  @IsInt()
  @Min(1)
  escrow_timeout_seconds?: number;
}

export class ListJobsQuery extends PageQuery {}

export class RegisterMinerDto {
  /** Where this miner's earnings are paid. */
  @ApiProperty({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' })
  @IsString()
  @MaxLength(100)
  payout_address: string;
}

export class JobResultDto {
  /** The job's output, any JSON value. */
  @ApiProperty({ example: { text: 'Hi there!' } })
  @IsDefined()
  result: unknown;

  @ApiPropertyOptional({ example: { duration_ms: 1200 } })
  @IsOptional()
  @IsObject()
  metrics?: Record<string, unknown>;
}

export class JobFailureDto {
  @ApiProperty({ example: 'CUDA out of memory' })
  @IsString()
  @Length(1, 2000)
  error: string;
}

export class JobView {
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }) job_id: string;
  @ApiProperty({ example: 'demo-client' }) client_id: string;
  @ApiProperty({ enum: JOB_STATES, example: 'queued' }) state: string;
  @ApiProperty({ example: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } } })
  payload: Record<string, unknown>;
  @ApiProperty({ example: {} }) constraints: Record<string, unknown>;
  @ApiProperty({ example: 900 }) ttl_seconds: number;
  @ApiProperty({ example: '2026-11-23T12:00:00.000Z' }) requested_at: string;
  @ApiProperty({ example: '2026-11-23T12:15:00.000Z' }) expires_at: string;
  @ApiProperty({ nullable: true, type: String, example: null }) assigned_miner_id: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) started_at: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) completed_at: string | null;
  @ApiProperty({ nullable: true, example: null }) result: unknown;
  @ApiProperty({ nullable: true, type: Object, example: null }) metrics: Record<string, unknown> | null;
  @ApiProperty({ nullable: true, type: String, example: null }) error: string | null;
  @ApiProperty({ nullable: true, type: String, example: '0193a5b0-7c1f-7000-8000-000000000001' }) payment_id:
    string | null;
  @ApiProperty({ nullable: true, enum: PAYMENT_STATUSES, example: 'escrowed' }) payment_status: string | null;
  @ApiProperty({ nullable: true, type: String, example: '0.00100000' }) payment_amount: string | null;
  @ApiProperty({ nullable: true, type: String, example: 'BTC' }) payment_currency: string | null;
  @ApiProperty({ example: '2026-11-23T12:00:00.000Z' }) updated_at: string;
}

export class JobPage {
  @ApiProperty({ type: [JobView] }) items: JobView[];
  @ApiProperty({ nullable: true, type: String }) next_cursor: string | null;
}

export class MinerView {
  @ApiProperty({ example: 'demo-miner' }) miner_id: string;
  @ApiProperty({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' }) payout_address: string;
  @ApiProperty() registered_at: string;
  @ApiProperty() updated_at: string;
}

export class JobBatchDto {
  /** 1–100 creates, each the body of `POST /v1/jobs`, each validated on its own. */
  @ApiProperty({
    type: 'array',
    items: { type: 'object' },
    minItems: 1,
    maxItems: 100,
    example: [
      { payload: { job_type: 'ai_inference', parameters: { prompt: 'one' } }, payment_amount: '0.001' },
      {
        payload: { job_type: 'ai_inference', parameters: { prompt: 'two' } },
        payment_amount: '0.002',
        ttl_seconds: 600,
      },
    ],
  })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(100)
  @IsObject({ each: true })
  items: Record<string, unknown>[];
}

export class JobBatchItemView {
  @ApiProperty({ example: 0 }) index: number;
  @ApiProperty({ example: 201 }) status_code: number;
  @ApiPropertyOptional({ type: JobView }) job?: JobView;
  @ApiPropertyOptional({ type: BatchItemErrorView }) error?: BatchItemErrorView;
}

export class JobBatchView {
  @ApiProperty({ type: [JobBatchItemView] }) items: JobBatchItemView[];
  @ApiProperty({ example: 2 }) succeeded: number;
  @ApiProperty({ example: 0 }) failed: number;
}
