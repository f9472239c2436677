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
 * Counts the requests whose handlers are still running and, on a graceful stop (SIGTERM,
 * Ctrl-C), waits for them before the database pool is closed. A request keeps running
 * after its caller hung up — a coalesced group finishing its daemon call and recording —
 * and Fastify's close does not wait for a request whose socket is gone. Without this wait
 * such work lost its pool at the daemon's answer and was left for the re-drive (a hold
 * recorded only once a lease ran out). Nest calls this hook before it closes the HTTP
 * server and before TypeORM's shutdown hook ends the pool.
 */
@Injectable()
export class InFlightRequests implements NestInterceptor, BeforeApplicationShutdown {
  private readonly logger = new Logger('Shutdown');
  private running = 0;
  private drained?: () => void;

  intercept(_context: ExecutionContext, next: CallHandler<unknown>): Observable<unknown> {
    this.running++;
    return next.handle().pipe(
      finalize(() => {
        if (--this.running === 0) this.drained?.();
      }),
    );
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
