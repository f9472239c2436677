import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
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
  private readonly logger = new Logger('Reconciliation');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopping = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly reconciliation: ReconciliationService,
  ) {}

  onApplicationBootstrap(): void {
    const ms = this.config.reconcileIntervalMs;
    if (!this.config.sweepsEnabled || ms === 0) return;
    this.timer = setInterval(() => this.tick(ms), ms);
  }

  /** Stops the timer and waits for a pass in flight, before the database pool closes. */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    // A pass in flight ends at its next page instead of running to the end.
    this.stopping = true;
    await this.running;
  }

  private tick(ms: number): void {
    if (this.running) return;
    this.running = this.reconciliation
      .reconcile(Math.floor(ms / 2), () => this.stopping)
      .then(() => undefined)
      .catch((error: unknown) => {
        if (!(error instanceof PassStopped))
          this.logger.error({ err: error }, 'reconciliation pass failed; will run again');
      })
      .finally(() => (this.running = undefined));
  }
}
