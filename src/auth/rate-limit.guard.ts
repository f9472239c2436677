import { ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions,
  InjectThrottlerStorage,
  ThrottlerGuard,
  ThrottlerModuleOptions,
  ThrottlerStorage,
} from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { ApiKeyRegistry } from './api-keys';
import { keyPrincipal } from './auth.guard';

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
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super(options, storage, reflector);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    // Limit 0 is off: skip the throttler's per-route metadata lookups on every request.
    if (this.config.rateLimitPerMinute === 0) return true;
    return super.canActivate(context);
  }

  protected async getTracker(req: Record<string, unknown>): Promise<string> {
    const request = req as unknown as FastifyRequest;
    const principal = keyPrincipal(this.registry, request);
    return principal ? `principal:${principal.id}` : `ip:${request.ip}`;
  }

  protected async shouldSkip(context: ExecutionContext): Promise<boolean> {
    const url = context.switchToHttp().getRequest<FastifyRequest>().url;
    // Probes and scrapes are never throttled.
    return url.startsWith('/health') || url === '/metrics';
  }
}
