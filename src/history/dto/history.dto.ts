import { ApiProperty, ApiPropertyOptional, IntersectionType } from '@nestjs/swagger';
import { PageQuery } from '../../common/page.query';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { PAYMENT_STATUSES } from '../../payments/job-payment.entity';
import { PaymentView } from '../../payments/dto/payment.dto';
import { EVENT_TYPES } from '../history-rules';

/** Filters shared by the list, the summary and the export (all optional, combined with AND). */
export class PaymentFiltersQuery {
  /** Comma list of statuses. */
  @ApiPropertyOptional({ example: 'released,refunded', description: `Comma list of ${PAYMENT_STATUSES.join(', ')}` })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  status?: string;

  @ApiPropertyOptional({ example: 'BTC' })
  @IsOptional()
  @IsString()
  @MaxLength(10)
  currency?: string;

  @ApiPropertyOptional({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  job_id?: string;

  /** Admins only. */
  @ApiPropertyOptional({ example: 'client-1', description: 'Admins only' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  client_id?: string;

  /** Admins only. */
  @ApiPropertyOptional({ example: 'miner-1', description: 'Admins only' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  miner_id?: string;

  @ApiPropertyOptional({
    example: '2026-11-01',
    description: 'Created at or after (ISO-8601; a date is its UTC midnight)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  created_from?: string;

  @ApiPropertyOptional({ example: '2026-12-01T00:00:00Z', description: 'Created before (half-open)' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  created_to?: string;

  @ApiPropertyOptional({ example: '2026-11-01', description: 'Released or refunded at or after' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  settled_from?: string;

  @ApiPropertyOptional({ example: '2026-12-01', description: 'Released or refunded before (half-open)' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  settled_to?: string;

  @ApiPropertyOptional({ example: '0.001', description: 'Amount at least (decimal string, inclusive)' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  amount_min?: string;

  @ApiPropertyOptional({ example: '1.5', description: 'Amount at most (decimal string, inclusive)' })
  @IsOptional()
  @IsString()
  @MaxLength(40)
  amount_max?: string;
}

export class ListPaymentsQuery extends IntersectionType(PaymentFiltersQuery, PageQuery) {}

export class SummaryQuery extends PaymentFiltersQuery {
  @ApiPropertyOptional({
    example: 'currency,status,day',
    description:
      'Comma list of currency (always included), status, day or month (UTC, by created_at), client_id or miner_id (admins)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  group_by?: string;
}

export class ExportQuery extends PaymentFiltersQuery {
  @ApiPropertyOptional({ enum: ['csv', 'ndjson'], default: 'csv' })
  @IsOptional()
  @IsIn(['csv', 'ndjson'])
  format?: 'csv' | 'ndjson';
}

export class EventsQuery {
  /** `next_cursor` of the previous call; omitted: from the oldest event. */
  @ApiPropertyOptional({ description: '`next_cursor` of the previous call; omitted: from the oldest event' })
  @IsOptional()
  @IsString()
  @MaxLength(300)
  after?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 500, default: 100 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;

  @ApiPropertyOptional({
    example: 'payment.released,payment.refunded',
    description: `Comma list of ${EVENT_TYPES.join(', ')}`,
  })
  @IsOptional()
  @IsString()
  @MaxLength(300)
  types?: string;
}

export class PaymentPage {
  @ApiProperty({ type: [PaymentView] }) items: PaymentView[];
  @ApiProperty({
    nullable: true,
    type: String,
    example: 'WyIyMDI2LTExLTMwVDEwOjAwOjAwLjEyMzQ1NloiLCIwMTkzYTViMC03YzFmLTcwMDAtODAwMC0wMDAwMDAwMDAwMDEiXQ',
  })
  next_cursor: string | null;
}

export class PayoutView {
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-000000000001' }) payment_id: string;
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }) job_id: string;
  @ApiProperty({ example: '0.00100000', description: 'Paid to the miner' }) amount: string;
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({ example: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080' }) payee_address: string;
  @ApiProperty({ example: '9f2c…' }) transaction_hash: string;
  @ApiProperty({ example: '2026-11-30T10:00:02.000Z' }) released_at: string;
}

export class PayoutPage {
  @ApiProperty({ type: [PayoutView] }) items: PayoutView[];
  @ApiProperty({ nullable: true, type: String }) next_cursor: string | null;
}

export class SummaryRowView {
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiPropertyOptional({ enum: PAYMENT_STATUSES, example: 'released' }) status?: string;
  @ApiPropertyOptional({ example: '2026-11-30' }) day?: string;
  @ApiPropertyOptional({ example: '2026-11' }) month?: string;
  @ApiPropertyOptional({ nullable: true, type: String, example: 'client-1' }) client_id?: string | null;
  @ApiPropertyOptional({ nullable: true, type: String, example: 'miner-1' }) miner_id?: string | null;
  @ApiProperty({ example: 42 }) count: number;
  @ApiProperty({ example: '0.04200000', description: 'Exact sum, in this row’s currency' }) amount: string;
}

export class SummaryTotalView {
  @ApiProperty({ example: 'BTC' }) currency: string;
  @ApiProperty({ example: 42 }) count: number;
  @ApiProperty({ example: '0.04200000' }) amount: string;
}

export class SummaryView {
  @ApiProperty({
    type: [SummaryRowView],
    example: [
      { currency: 'BTC', status: 'released', day: '2026-11-30', count: 40, amount: '0.04000000' },
      { currency: 'BTC', status: 'refunded', day: '2026-11-30', count: 2, amount: '0.00200000' },
      { currency: 'AITBC', status: 'released', day: '2026-11-30', count: 3, amount: '150.00000000' },
    ],
  })
  rows: SummaryRowView[];
  @ApiProperty({
    type: [SummaryTotalView],
    example: [
      { currency: 'AITBC', count: 3, amount: '150.00000000' },
      { currency: 'BTC', count: 42, amount: '0.04200000' },
    ],
    description: 'Per currency; amounts are never summed across currencies',
  })
  totals: SummaryTotalView[];
}

export class FeedEventView {
  @ApiProperty({ example: '1042' }) event_id: string;
  @ApiProperty({ enum: EVENT_TYPES, example: 'payment.released' }) type: string;
  @ApiProperty({ example: '0193a5b0-7c1f-7000-8000-000000000001' }) payment_id: string;
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }) job_id: string;
  @ApiProperty({ nullable: true, enum: PAYMENT_STATUSES, example: 'releasing' }) from_status: string | null;
  @ApiProperty({ enum: PAYMENT_STATUSES, example: 'released' }) to_status: string;
  @ApiProperty({ nullable: true, type: String, example: 'job_completed' }) reason: string | null;
  @ApiProperty({ example: 'wallet-daemon' }) actor: string;
  @ApiProperty({ example: '2026-11-30T10:00:02.000Z' }) created_at: string;
}

export class FeedPage {
  @ApiProperty({ type: [FeedEventView] }) items: FeedEventView[];
  @ApiProperty({
    nullable: true,
    type: String,
    description: 'Pass as `after` to continue; null only when nothing has been served yet',
    example: 'WyI4MzEiLCIxMDQyIl0',
  })
  next_cursor: string | null;
}
