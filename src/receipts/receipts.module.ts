import { Module } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { HistoryModule } from '../history/history.module';
import { ReceiptSigner } from './receipt-signer';
import { ReceiptsController } from './receipts.controller';
import { ReceiptsService } from './receipts.service';

@Module({
  imports: [HistoryModule],
  controllers: [ReceiptsController],
  providers: [
    {
      provide: ReceiptSigner,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) =>
        new ReceiptSigner({
          signingKeyPem: config.receiptSigningKey,
          dataDir: config.dataDir,
          production: config.nodeEnv === 'production',
          previousPublicKeysPem: config.receiptPreviousPublicKeys,
        }),
    },
    ReceiptsService,
  ],
  exports: [ReceiptsService],
})
export class ReceiptsModule {}
