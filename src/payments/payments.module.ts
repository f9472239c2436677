import { Module } from '@nestjs/common';
import { EscrowModule } from '../escrow/escrow.module';
import { PaymentsController } from './payments.controller';
import { PaymentJobs } from './payment-jobs.repository';
import { PaymentsService } from './payments.service';

@Module({
  imports: [EscrowModule],
  controllers: [PaymentsController],
  providers: [PaymentsService, PaymentJobs],
  exports: [PaymentsService],
})
export class PaymentsModule {}
