import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { HistoryService } from './history.service';

/** How often the summary rollup's deltas are folded: readers sum the unfolded ones, so this bounds their work. */
export const ROLLUP_FOLD_INTERVAL_MS = 5000;

/** Only triggers the fold (safe on every instance at once: one folds, the others skip); off with the sweeps. */
@Injectable()
export class RollupFolder implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('RollupFolder');
  private running?: Promise<void>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly scheduler: SchedulerRegistry,
    private readonly history: HistoryService,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.sweepsEnabled) return;
    const tick = () => {
      if (this.running) return;
      this.running = this.history
        .foldRollup()
        .then(() => undefined)
        .catch((error: unknown) => this.logger.error({ err: error }, 'rollup fold failed; will run again'))
        .finally(() => (this.running = undefined));
    };
    this.scheduler.addInterval('rollup-fold', setInterval(tick, ROLLUP_FOLD_INTERVAL_MS));
  }

  async onModuleDestroy(): Promise<void> {
    if (this.scheduler.doesExist('interval', 'rollup-fold')) this.scheduler.deleteInterval('rollup-fold');
    await this.running;
  }
}
