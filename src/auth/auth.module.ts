import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { ApiKeyRegistry } from './api-keys';
import { ApiKeyGuard } from './auth.guard';
import { RateLimitGuard } from './rate-limit.guard';

/** Who is calling and how often: the rate limit runs first, then the key and role check. */
@Global()
@Module({
  imports: [
    ThrottlerModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        throttlers: [{ name: 'default', ttl: 60_000, limit: config.rateLimitPerMinute }],
        // A limit of 0 switches rate limiting off (benchmarks, most tests).
        skipIf: () => config.rateLimitPerMinute === 0,
      }),
    }),
  ],
  providers: [
    {
      provide: ApiKeyRegistry,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new ApiKeyRegistry(config.apiKeys),
    },
    { provide: APP_GUARD, useClass: RateLimitGuard },
    { provide: APP_GUARD, useClass: ApiKeyGuard },
  ],
  exports: [ApiKeyRegistry],
})
export class AuthModule {}
