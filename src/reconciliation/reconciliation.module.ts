import { Module } from '@nestjs/common';
import { EscrowModule } from '../escrow/escrow.module';
import { PaymentsModule } from '../payments/payments.module';
import { ReconciliationController } from './reconciliation.controller';
import { ReconciliationMetrics } from './reconciliation.metrics';
import { ReconciliationRepository } from './reconciliation.repository';
import { ReconciliationScheduler } from './reconciliation.scheduler';
import { ReconciliationService } from './reconciliation.service';

/**
 * Reconciliation with the wallet daemon (README "Reconciliation"): reads both books,
 * records through PaymentsService what the daemon already did, reports everything else.
 */
@Module({
  imports: [EscrowModule, PaymentsModule],
  controllers: [ReconciliationController],
  providers: [ReconciliationRepository, ReconciliationService, ReconciliationMetrics, ReconciliationScheduler],
  exports: [ReconciliationService],
})
export class ReconciliationModule {}
