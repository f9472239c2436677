import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { WebhookDeliveryService } from './webhook-delivery.service';

/**
 * Only triggers the delivery worker (`WebhookDeliveryService.deliverDue`), which is safe
 * on every instance at once; an interval never overlaps itself here.
 */
@Injectable()
export class WebhookScheduler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Webhooks');
  private readonly running = new Map<string, Promise<void>>();
  private readonly names: string[] = [];

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly scheduler: SchedulerRegistry,
    private readonly delivery: WebhookDeliveryService,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.webhookDeliveryEnabled) return;
    this.every('webhook-deliveries', this.config.webhookPollIntervalMs, () => this.delivery.deliverDue());
    this.every('webhook-backlog-metrics', 5000, () => this.delivery.observeBacklog());
  }

  /** Stops the timers and waits for work in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    for (const name of this.names) if (this.scheduler.doesExist('interval', name)) this.scheduler.deleteInterval(name);
    await Promise.all(this.running.values());
  }

  private every(name: string, ms: number, work: () => Promise<unknown>): void {
    const tick = () => {
      if (this.running.has(name)) return;
      const run = work()
        .then(() => undefined)
        .catch((error: unknown) => this.logger.error({ err: error, work: name }, 'webhook work failed; will run again'))
        .finally(() => this.running.delete(name));
      this.running.set(name, run);
    };
    this.names.push(name);
    this.scheduler.addInterval(name, setInterval(tick, ms));
  }
}
