import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { PeriodicWork } from '../common/periodic-work';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { WebhookDeliveryService } from './webhook-delivery.service';

/**
 * Only triggers the delivery worker (`WebhookDeliveryService.deliverDue`), which is safe
 * on every instance at once; `PeriodicWork` never lets an interval overlap itself.
 */
@Injectable()
export class WebhookScheduler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly work: PeriodicWork;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    scheduler: SchedulerRegistry,
    private readonly delivery: WebhookDeliveryService,
  ) {
    this.work = new PeriodicWork(scheduler, new Logger('Webhooks'), 'webhook work');
  }

  onApplicationBootstrap(): void {
    if (!this.config.webhookDeliveryEnabled) return;
    this.work.every('webhook-deliveries', this.config.webhookPollIntervalMs, () => this.delivery.deliverDue());
    this.work.every('webhook-backlog-metrics', 5000, () => this.delivery.observeBacklog());
  }

  /** Stops the timers and waits for work in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    await this.work.stop();
  }
}
