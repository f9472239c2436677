import { Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { LoggerModule } from 'nestjs-pino';
import { AuthModule } from './auth/auth.module';
import { GlobalErrorFilter } from './common/error.filter';
import { requestForLog } from './common/request-logging';
import { createValidationPipe } from './common/validation';
import { WriteRoutesModule } from './common/write-routes';
import { AppConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { HealthModule } from './health/health.module';
import { HistoryModule } from './history/history.module';
import { IdempotencyModule } from './idempotency/idempotency.module';
import { JobsModule } from './jobs/jobs.module';
import { MetricsModule } from './metrics/metrics.module';
import { PaymentsModule } from './payments/payments.module';
import { ProvidersAdminModule } from './providers/providers-admin.module';
import { ReceiptsModule } from './receipts/receipts.module';
import { ReconciliationModule } from './reconciliation/reconciliation.module';
import { WebhooksModule } from './webhooks/webhooks.module';

@Module({
  imports: [
    AppConfigModule,
    AuthModule,
    LoggerModule.forRoot({
      // No Nest middleware: requests are logged by two Fastify hooks (`installRequestLogging`).
      forRoutes: [],
      // The logger everything logs through; its serializers shape the request lines.
      pinoHttp: {
        level: process.env.LOG_LEVEL ?? 'info',
        serializers: { req: requestForLog, res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }) },
      },
    }),
    ScheduleModule.forRoot(),
    DatabaseModule,
    MetricsModule,
    IdempotencyModule,
    WriteRoutesModule,
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
    { provide: APP_FILTER, useClass: GlobalErrorFilter },
  ],
})
export class AppModule {}
