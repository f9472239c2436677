import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { iso } from '../common/format';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import type { Job } from '../jobs/job.entity';
import { toJobView } from '../jobs/job.view';
import type { JobPayment } from '../payments/job-payment.entity';
import { toPaymentView } from '../payments/payment.view';
import { AttemptOutcome, WebhookDeliveriesRepository } from './webhook-deliveries.repository';
import type { ClaimedDelivery } from './webhook.entities';
import { WebhookMetrics } from './webhook.metrics';
import { SendResult, WebhookSender } from './webhook.sender';
import { WebhookSecretBox } from './webhook-secret-box';
import { WebhookSigner } from './webhook-signer';

/**
 * The delivery worker's work, safe to run on every instance at once and to run twice:
 * claim due deliveries under a lease (one statement, committed), send them with no
 * transaction open, record the outcomes with a compare-and-set on the lease token.
 * At least once: a worker that dies after its claim leaves the rows to come due again
 * when the lease ends; no two workers hold the same delivery at once.
 */
@Injectable()
export class WebhookDeliveryService {
  private readonly logger = new Logger('Webhooks');
  private readonly signer = new WebhookSigner();
  /** Longer than any attempt can take (it is abandoned at the timeout), so a live worker never loses its lease. */
  private readonly leaseMs: number;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly deliveries: WebhookDeliveriesRepository,
    private readonly sender: WebhookSender,
    private readonly metrics: WebhookMetrics,
    private readonly secretBox: WebhookSecretBox,
  ) {
    this.leaseMs = 2 * config.webhookTimeoutMs + 1000;
  }

  /**
   * Delivers what is due, batch after batch, until a claim comes back short. Two loops
   * run side by side so that one's database round trips overlap the other's HTTP
   * (their claims never overlap: SKIP LOCKED and the lease). Returns the attempts made.
   */
  async deliverDue(): Promise<number> {
    const loops = await Promise.all([this.deliverLoop(), this.deliverLoop()]);
    return loops[0] + loops[1];
  }

  private async deliverLoop(): Promise<number> {
    let attempts = 0;
    for (;;) {
      const claimed = await this.deliveries.claimDue(this.config.webhookBatchSize, this.leaseMs, randomUUID());
      if (claimed.length === 0) return attempts;
      const deadline = this.sender.deadline();
      const outcomes = await Promise.all(claimed.map((d) => this.attempt(d, deadline.signal))).finally(deadline.done);
      const { recorded, disabled } = await this.deliveries.recordAttempts(
        outcomes,
        this.config.webhookRetrySchedule,
        this.config.webhookDisableAfterSeconds,
      );
      for (const r of recorded) {
        const outcome = r.ok ? 'delivered' : r.status === 'failed' ? 'failed' : 'retry';
        this.metrics.attempts.inc({ endpoint_id: r.endpoint_id, outcome });
        this.metrics.duration.observe({ endpoint_id: r.endpoint_id }, r.duration_ms / 1000);
      }
      for (const endpointId of disabled) {
        this.metrics.disabled.inc({ endpoint_id: endpointId });
        this.logger.warn({ endpoint_id: endpointId }, 'webhook endpoint disabled after failing too long');
      }
      if (recorded.length < outcomes.length)
        this.logger.warn(
          { lost: outcomes.length - recorded.length },
          'webhook attempts not recorded: their lease had passed (another worker may send them again)',
        );
      attempts += claimed.length;
      if (claimed.length < this.config.webhookBatchSize) return attempts;
    }
  }

  async observeBacklog(): Promise<void> {
    const rows = await this.deliveries.backlog();
    this.metrics.backlog.reset();
    for (const row of rows) this.metrics.backlog.set({ endpoint_id: row.endpoint_id }, Number(row.pending));
  }

  private async attempt(d: ClaimedDelivery, signal: AbortSignal): Promise<AttemptOutcome> {
    const started = performance.now();
    const done = (result: SendResult): AttemptOutcome => ({
      delivery_id: d.delivery_id,
      lease_token: d.lease_token,
      ...result,
      duration_ms: Math.round(performance.now() - started),
    });
    let secrets: string[];
    try {
      secrets = d.secrets.map((stored) => this.secretBox.open(stored));
    } catch (error: unknown) {
      // Fail closed: nothing unsigned or wrongly signed goes out; the attempt fails and is retried.
      this.logger.error({ endpoint_id: d.endpoint_id, err: error }, 'webhook secret could not be opened');
      return done({ ok: false, status_code: null, error: 'signing secret could not be opened (WEBHOOK_SECRETS_KEY)' });
    }
    const body = JSON.stringify(this.bodyOf(d));
    const sentAt = new Date();
    const result = await this.sender.send(
      d.url,
      {
        'webhook-id': d.event_id,
        'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
        'webhook-signature': this.signer.sign(secrets, d.event_id, sentAt, body),
      },
      body,
      signal,
    );
    return done(result);
  }

  /**
   * `{type, timestamp, data: {event_id, payment?, job?, reason?}}`. The views are the
   * API's own, rendered from the row snapshots the trigger took at the change (JSON
   * timestamps and exact amount text), so every retry carries the same body.
   */
  bodyOf(d: ClaimedDelivery): Record<string, unknown> {
    const data: Record<string, unknown> = { event_id: d.event_id };
    if (d.payment) data.payment = toPaymentView(this.config, d.payment as unknown as JobPayment);
    if (d.job) data.job = toJobView(this.config, d.job as unknown as Job);
    if (d.reason !== null) data.reason = d.reason;
    return { type: d.type, timestamp: iso(d.event_created_at), data };
  }
}
