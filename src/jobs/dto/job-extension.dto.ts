import { ApiProperty } from '@nestjs/swagger';
import { IsInt, Max, Min } from 'class-validator';
import { PaymentView } from '../../payments/dto/payment.dto';
import { JobView } from './job.dto';

/** `POST /v1/jobs/{job_id}/extend`. */
export class ExtendJobDto {
  /**
   * How many seconds later the job's deadline and its escrow's expiry move; a positive
   * integer, within JOB_TTL_MAX_SECONDS of the job's request and ESCROW_MAX_TIMEOUT_SECONDS
   * of the escrow's hold (400 `EXTENSION_OUT_OF_RANGE` beyond).
   */
  @ApiProperty({ example: 1800, minimum: 1 })
  @IsInt()
  @Min(1)
  // Anything longer is past every maximum the configuration allows (365 days).
  @Max(365 * 86_400)
  seconds: number;
}

export class ExtensionView {
  /** The job with its new deadline (`expires_at`). */
  @ApiProperty({ type: JobView }) job: JobView;
  /** Its payment with the escrow's new `expires_at`; null for a job without a payment. */
  @ApiProperty({ type: PaymentView, nullable: true }) payment: PaymentView | null;
}
