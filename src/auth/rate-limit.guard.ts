import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { InjectThrottlerOptions, InjectThrottlerStorage, ThrottlerGuard, ThrottlerModuleOptions, ThrottlerStorage } from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';
import { ApiKeyRegistry } from './api-keys';

/**
 * Rate limits per principal for known keys and per client IP for everything else
 * (so guessing keys is limited too). Runs before authentication; answers 429 with
 * `Retry-After`. Counters are per instance (in memory).
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly registry: ApiKeyRegistry,
  ) {
    super(options, storage, reflector);
  }

  protected async getTracker(req: Record<string, unknown>): Promise<string> {
    const request = req as unknown as FastifyRequest;
    const key = request.headers['x-api-key'];
    const principal = this.registry.authenticate(typeof key === 'string' ? key : undefined);
    return principal ? `principal:${principal.id}` : `ip:${request.ip}`;
  }

  protected async shouldSkip(context: ExecutionContext): Promise<boolean> {
    const url = context.switchToHttp().getRequest<FastifyRequest>().url;
    // Probes and scrapes are never throttled.
    return url.startsWith('/health') || url === '/metrics';
  }
}
