import { Module } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { PaymentsModule } from '../payments/payments.module';
import { ReceiptSigner } from './receipt-signer';
import { ReceiptsController } from './receipts.controller';
import { ReceiptsService } from './receipts.service';

@Module({
  imports: [PaymentsModule],
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
