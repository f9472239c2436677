import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { PaymentsService } from '../payments/payments.service';
import { JobsService } from './jobs.service';

/**
 * Only triggers: the work (`expireDue`, `redriveDue`) is in the services and is safe to
 * run on every instance at once. An interval never overlaps itself here.
 */
@Injectable()
export class JobSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Sweeper');
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly scheduler: SchedulerRegistry,
    private readonly jobs: JobsService,
    private readonly payments: PaymentsService,
    private readonly idempotency: IdempotencyService,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.sweepsEnabled) return;
    // One sweep covers job TTLs and escrow expiry (see JobsService.expireDue), at the shorter interval.
    this.every('deadlines', Math.min(this.config.jobSweepIntervalMs, this.config.escrowSweepIntervalMs), () =>
      this.jobs.expireDue(),
    );
    this.every('redrive', this.config.redriveIntervalMs, () => this.payments.redriveDue());
    this.every('backlog-metrics', 5000, () => this.payments.observeBacklog());
    this.every('idempotency-keys', 3_600_000, () => this.idempotency.purgeExpired());
  }

  /** Stops the timers and waits for sweeps in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    for (const name of this.scheduler.getIntervals()) this.scheduler.deleteInterval(name);
    await Promise.all(this.running.values());
  }

  private every(name: string, ms: number, work: () => Promise<unknown>): void {
    const tick = () => {
      if (this.running.has(name)) return;
      const run = work()
        .then(() => undefined)
        .catch((error: unknown) => this.logger.error({ err: error, sweep: name }, 'sweep failed; will run again'))
        .finally(() => this.running.delete(name));
      this.running.set(name, run);
    };
    this.scheduler.addInterval(name, setInterval(tick, ms));
  }
}
