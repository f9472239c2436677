import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { PeriodicWork } from '../common/periodic-work';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { PassStopped, ReconciliationService } from './reconciliation.service';

/**
 * Only triggers `ReconciliationService.reconcile` every RECONCILE_INTERVAL_MS on every
 * instance (off at 0, and with the other sweeps when SWEEPS_ENABLED=false); the lease
 * lets one instance run a pass at a time, and a pass is skipped when another finished less
 * than half an interval ago, so N instances do not make N passes per interval.
 */
@Injectable()
export class ReconciliationScheduler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly work: PeriodicWork;
  private stopping = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    scheduler: SchedulerRegistry,
    private readonly reconciliation: ReconciliationService,
  ) {
    this.work = new PeriodicWork(scheduler, new Logger('Reconciliation'), 'reconciliation pass');
  }

  onApplicationBootstrap(): void {
    const ms = this.config.reconcileIntervalMs;
    if (!this.config.sweepsEnabled || ms === 0) return;
    this.work.every(
      'reconciliation',
      ms,
      () => this.reconciliation.reconcile(Math.floor(ms / 2), () => this.stopping),
      (error) => error instanceof PassStopped,
    );
  }

  /** Stops the timer and waits for a pass in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    // A pass in flight ends at its next page instead of running to the end.
    this.stopping = true;
    await this.work.stop();
  }
}
