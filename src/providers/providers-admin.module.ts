import { Module } from '@nestjs/common';
import { PaymentsModule } from '../payments/payments.module';
import { ProvidersModule } from './providers.module';
import { ProvidersController } from './providers.controller';
import { ProvidersAdminService } from './providers-admin.service';

/** `GET /v1/providers`, drain and resume: above Payments, whose holdings it reports. */
@Module({
  imports: [ProvidersModule, PaymentsModule],
  controllers: [ProvidersController],
  providers: [ProvidersAdminService],
})
export class ProvidersAdminModule {}
