import { Module } from '@nestjs/common';
import { EscrowModule } from '../escrow/escrow.module';
import { JobPaymentsRepository } from './job-payments.repository';
import { PaymentCreation } from './payment-creation.service';
import { PaymentDaemonCalls } from './payment-daemon-calls.service';
import { PaymentDecisions } from './payment-decisions.service';
import { PaymentEventsRepository } from './payment-events.repository';
import { PaymentExtension } from './payment-extension.service';
import { PaymentLog } from './payment-log';
import { PaymentQueries } from './payment-queries.service';
import { PaymentRedrive } from './payment-redrive.service';
import { PaymentSettlement } from './payment-settlement.service';
import { PaymentsController } from './payments.controller';
import { PaymentsService } from './payments.service';

/**
 * Payments. `PaymentJobs` (the statements Payments makes on the job table) is injected
 * from the jobs module's global `JobRepositoryModule`: Payments declares what it needs and
 * never imports Jobs.
 */
@Module({
  imports: [EscrowModule],
  controllers: [PaymentsController],
  providers: [
    JobPaymentsRepository,
    PaymentEventsRepository,
    PaymentLog,
    PaymentDaemonCalls,
    PaymentSettlement,
    PaymentDecisions,
    PaymentCreation,
    PaymentRedrive,
    PaymentExtension,
    PaymentQueries,
    PaymentsService,
  ],
  exports: [PaymentsService],
})
export class PaymentsModule {}
