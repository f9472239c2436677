import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { PeriodicWork } from '../common/periodic-work';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { HistoryService } from './history.service';

/** How often the summary rollup's deltas are folded: readers sum the unfolded ones, so this bounds their work. */
export const ROLLUP_FOLD_INTERVAL_MS = 5000;

/** Only triggers the fold (safe on every instance at once: one folds, the others skip); off with the sweeps. */
@Injectable()
export class RollupFolder implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly work: PeriodicWork;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    scheduler: SchedulerRegistry,
    private readonly history: HistoryService,
  ) {
    this.work = new PeriodicWork(scheduler, new Logger('RollupFolder'), 'rollup fold');
  }

  onApplicationBootstrap(): void {
    if (!this.config.sweepsEnabled) return;
    this.work.every('rollup-fold', ROLLUP_FOLD_INTERVAL_MS, () => this.history.foldRollup());
  }

  async onModuleDestroy(): Promise<void> {
    await this.work.stop();
  }
}
