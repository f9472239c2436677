import { Module } from '@nestjs/common';
import { HistoryController } from './history.controller';
import { HistoryService } from './history.service';
import { PaymentHistoryRepository } from './payment-history.repository';
import { RollupFolder } from './rollup.folder';

/** Payment history and reporting: lists, payouts, summary, export, the event feed. Reads only. */
@Module({
  controllers: [HistoryController],
  providers: [HistoryService, PaymentHistoryRepository, RollupFolder],
  exports: [HistoryService],
})
export class HistoryModule {}
