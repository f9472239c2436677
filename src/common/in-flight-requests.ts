import {
  BeforeApplicationShutdown,
  CallHandler,
  Injectable,
  Logger,
  NestInterceptor,
  ExecutionContext,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Observable } from 'rxjs';
import { finalize } from 'rxjs/operators';

/** Longest a graceful stop waits for requests still running (a hung daemon call must not hold it forever). */
export const SHUTDOWN_DRAIN_LIMIT_MS = 20_000;

/**
 * Counts the write requests whose handlers are still running and, on a graceful stop
 * (SIGTERM, Ctrl-C), waits for them before the database pool is closed. A request keeps
 * running after its caller hung up — a coalesced group finishing its daemon call and
 * recording — and Fastify's close does not wait for a request whose socket is gone.
 * Without this wait such work lost its pool at the daemon's answer and was left for the
 * re-drive (a hold recorded only once a lease ran out). Nest calls this hook before it
 * closes the HTTP server and before TypeORM's shutdown hook ends the pool. One instance
 * per application (`WriteRoutesModule`); `CountInFlight` feeds it.
 */
@Injectable()
export class InFlightRequests implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Shutdown');
  private running = 0;
  private drained?: () => void;

  started(): void {
    this.running++;
  }

  ended(): void {
    if (--this.running === 0) this.drained?.();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.running === 0) return;
    this.logger.log(`waiting for ${this.running} request(s) in flight before closing the database pool`);
    const idle = new Promise<void>((resolve) => (this.drained = resolve));
    const stop = new AbortController();
    await Promise.race([
      idle,
      sleep(SHUTDOWN_DRAIN_LIMIT_MS, undefined, { signal: stop.signal }).catch(() => undefined),
    ]);
    stop.abort();
    if (this.running > 0)
      this.logger.warn(`${this.running} request(s) still running after ${SHUTDOWN_DRAIN_LIMIT_MS} ms`);
  }
}

/** The interceptor of every write route (`PostRoute`, `DeleteRoute`): its handler counted while it runs. */
@Injectable()
export class CountInFlight implements NestInterceptor {
  constructor(private readonly inFlight: InFlightRequests) {}

  intercept(_context: ExecutionContext, next: CallHandler<unknown>): Observable<unknown> {
    this.inFlight.started();
    return next.handle().pipe(finalize(() => this.inFlight.ended()));
  }
}
