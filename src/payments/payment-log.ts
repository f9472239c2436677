import { Injectable, Logger } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import type { PaymentStatus } from './job-payment.entity';

/** One log line and one counter per committed status change (called after the commit). */
@Injectable()
export class PaymentLog {
  private readonly logger = new Logger('Payments');

  constructor(private readonly metrics: MetricsService) {}

  transition(paymentId: string, from: PaymentStatus | null, to: PaymentStatus, reason: string | null, actor: string) {
    this.metrics.paymentTransitions.inc({ from: from ?? 'none', to });
    this.logger.log({ payment_id: paymentId, from, to, reason, actor }, 'payment status changed');
  }
}
