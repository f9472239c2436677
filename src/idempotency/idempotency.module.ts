import { Global, Module } from '@nestjs/common';
import { IdempotencyKeysRepository } from './idempotency-keys.repository';
import { IdempotencyService } from './idempotency.service';
import { RecoveryPoints } from './recovery-points';

@Global()
@Module({
  providers: [IdempotencyKeysRepository, IdempotencyService, RecoveryPoints],
  exports: [IdempotencyService, RecoveryPoints],
})
export class IdempotencyModule {}
