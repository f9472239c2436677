import { Module } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { WebhookDeliveriesRepository } from './webhook-deliveries.repository';
import { WebhookDeliveryService } from './webhook-delivery.service';
import { WebhookEndpointsController } from './webhook-endpoints.controller';
import { WebhookEndpointsRepository } from './webhook-endpoints.repository';
import { WebhookEndpointsService } from './webhook-endpoints.service';
import { WebhookMetrics } from './webhook.metrics';
import { WebhookScheduler } from './webhook.scheduler';
import { WebhookSecretBox } from './webhook-secret-box';
import { WebhookSender } from './webhook.sender';

/**
 * Signed webhooks (README "Webhooks"). Events are written by database triggers in the
 * transaction of the change (migration 1764300000000), so this module depends on no
 * other feature module: it reads the outbox and renders payments and jobs with their
 * API view functions.
 */
@Module({
  controllers: [WebhookEndpointsController],
  providers: [
    WebhookEndpointsRepository,
    WebhookDeliveriesRepository,
    WebhookEndpointsService,
    WebhookDeliveryService,
    WebhookSender,
    WebhookMetrics,
    WebhookScheduler,
    {
      provide: WebhookSecretBox,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new WebhookSecretBox(config.webhookSecretsKey),
    },
  ],
  exports: [WebhookDeliveryService],
})
export class WebhooksModule {}
