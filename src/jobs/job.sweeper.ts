import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { PeriodicWork } from '../common/periodic-work';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { PaymentsService } from '../payments/payments.service';
import { JobsService } from './jobs.service';

/**
 * Only triggers: the work (`expireDue`, `redriveDue`) is in the services and is safe to
 * run on every instance at once; `PeriodicWork` never lets an interval overlap itself.
 */
@Injectable()
export class JobSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly work: PeriodicWork;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    scheduler: SchedulerRegistry,
    private readonly jobs: JobsService,
    private readonly payments: PaymentsService,
    private readonly idempotency: IdempotencyService,
  ) {
    this.work = new PeriodicWork(scheduler, new Logger('Sweeper'), 'sweep');
  }

  onApplicationBootstrap(): void {
    if (!this.config.sweepsEnabled) return;
    // One sweep covers job TTLs and escrow expiry (see JobsService.expireDue), at the shorter interval.
    this.work.every('deadlines', Math.min(this.config.jobSweepIntervalMs, this.config.escrowSweepIntervalMs), () =>
      this.jobs.expireDue(),
    );
    this.work.every('redrive', this.config.redriveIntervalMs, () => this.payments.redriveDue());
    this.work.every('backlog-metrics', 5000, () => this.payments.observeBacklog());
    this.work.every('idempotency-keys', 3_600_000, () => this.idempotency.purgeExpired());
  }

  /** Stops the timers and waits for sweeps in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    await this.work.stop();
  }
}
