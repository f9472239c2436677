import { Module, RequestMethod } from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR, APP_PIPE } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { LoggerModule } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import { AuthModule } from './auth/auth.module';
import { GlobalErrorFilter } from './common/error.filter';
import { InFlightRequests } from './common/in-flight-requests';
import { createValidationPipe } from './common/validation';
import { AppConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { HealthModule } from './health/health.module';
import { HistoryModule } from './history/history.module';
import { IdempotencyInterceptor } from './idempotency/idempotency.interceptor';
import { IdempotencyModule } from './idempotency/idempotency.module';
import { JobsModule } from './jobs/jobs.module';
import { MetricsModule } from './metrics/metrics.module';
import { PaymentsModule } from './payments/payments.module';
import { ProvidersAdminModule } from './providers/providers-admin.module';
import { ReceiptsModule } from './receipts/receipts.module';
import { ReconciliationModule } from './reconciliation/reconciliation.module';
import { WebhooksModule } from './webhooks/webhooks.module';

/** Headers never written to a log line: shown as `[redacted]`. */
export const SECRET_HEADERS = ['x-api-key', 'authorization', 'cookie'];

/**
 * The request as log lines show it (pino's standard fields), its secret-bearing headers
 * replaced in a copy. A serializer, not pino's `redact` option: pino-http serializes the
 * request into a child logger on every request, logged or not, and `redact`'s clone of
 * it was about a tenth of the CPU of a `GET /v1/payments/{id}`.
 */
export function requestForLog<R extends { headers: Record<string, unknown> }>(req: R): R {
  const headers = { ...req.headers };
  for (const name of SECRET_HEADERS) if (headers[name] !== undefined) headers[name] = '[redacted]';
  // `req` is pino's fresh copy of the request; the request's own headers stay untouched.
  req.headers = headers;
  return req;
}

@Module({
  imports: [
    AppConfigModule,
    AuthModule,
    LoggerModule.forRoot({
      // nestjs-pino's default pattern matches nothing on Nest 12's Fastify adapter; this matches every path.
      forRoutes: [{ path: '{*path}', method: RequestMethod.ALL }],
      pinoHttp: {
        level: process.env.LOG_LEVEL ?? 'info',
        // One request id everywhere: the client's X-Request-Id, else a fresh one.
        genReqId: (req) =>
          (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) ??
          (req as { id?: string }).id ??
          randomUUID(),
        serializers: { req: requestForLog, res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }) },
        autoLogging: { ignore: (req) => (req.url ?? '').startsWith('/health') || req.url === '/metrics' },
      },
    }),
    ScheduleModule.forRoot(),
    DatabaseModule,
    MetricsModule,
    IdempotencyModule,
    HealthModule,
    PaymentsModule,
    ProvidersAdminModule,
    JobsModule,
    ReceiptsModule,
    HistoryModule,
    WebhooksModule,
    ReconciliationModule,
  ],
  providers: [
    { provide: APP_PIPE, useFactory: createValidationPipe },
    // First, so it wraps everything else a request runs (interceptors apply in this order).
    InFlightRequests,
    { provide: APP_INTERCEPTOR, useExisting: InFlightRequests },
    { provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor },
    { provide: APP_FILTER, useClass: GlobalErrorFilter },
  ],
})
export class AppModule {}
