import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';

/** Per-endpoint webhook metrics, on the app's one registry (`/metrics`). */
@Injectable()
export class WebhookMetrics {
  readonly attempts: Counter<'endpoint_id' | 'outcome'>;
  readonly duration: Histogram<'endpoint_id'>;
  readonly backlog: Gauge<'endpoint_id'>;
  readonly disabled: Counter<'endpoint_id'>;

  constructor(metrics: MetricsService) {
    const registers = [metrics.registry];
    this.attempts = new Counter({
      name: 'webhook_attempts_total',
      help: 'Webhook delivery attempts per endpoint, by outcome (delivered, retry: failed and scheduled again, failed: schedule spent)',
      labelNames: ['endpoint_id', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'webhook_attempt_duration_seconds',
      help: 'Time from sending a webhook to its answer (or failure), per endpoint',
      labelNames: ['endpoint_id'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.backlog = new Gauge({
      name: 'webhook_deliveries_pending',
      help: 'Webhook deliveries not yet made (due now or waiting for a retry), per endpoint',
      labelNames: ['endpoint_id'],
      registers,
    });
    this.disabled = new Counter({
      name: 'webhook_endpoints_disabled_total',
      help: 'Endpoints disabled after failing for WEBHOOK_DISABLE_AFTER_SECONDS',
      labelNames: ['endpoint_id'],
      registers,
    });
  }
}
