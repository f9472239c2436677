import type { Logger } from '@nestjs/common';
import type { SchedulerRegistry } from '@nestjs/schedule';

/**
 * Named periodic work that never overlaps itself: a tick while the previous run is still
 * going is skipped. A failed run is logged and the next tick runs again. `stop()` clears
 * this owner's intervals (no other module's) and waits for the runs in flight, so a
 * shutdown never closes the database pool under a sweep.
 */
export class PeriodicWork {
  private readonly names: string[] = [];
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly scheduler: SchedulerRegistry,
    private readonly logger: Logger,
    /** What a failed run is called in the log line, e.g. `sweep`. */
    private readonly what: string,
  ) {}

  /** Runs `work` every `ms`; `expected` marks errors that end a run on purpose (not logged). */
  every(name: string, ms: number, work: () => Promise<unknown>, expected?: (error: unknown) => boolean): void {
    const tick = () => {
      if (this.running.has(name)) return;
      const run = work()
        .then(() => undefined)
        .catch((error: unknown) => {
          if (!expected?.(error)) this.logger.error({ err: error, work: name }, `${this.what} failed; will run again`);
        })
        .finally(() => this.running.delete(name));
      this.running.set(name, run);
    };
    // Registered with Nest's scheduler, whose names are unique: a name used twice is a mistake found at start-up.
    if (this.scheduler.doesExist('interval', name)) throw new Error(`periodic work "${name}" is already registered`);
    this.scheduler.addInterval(name, setInterval(tick, ms));
    this.names.push(name);
  }

  async stop(): Promise<void> {
    for (const name of this.names.splice(0)) this.scheduler.deleteInterval(name);
    await Promise.all(this.running.values());
  }
}
