import { Global, Module } from '@nestjs/common';
import { IdempotencyService } from './idempotency.service';
import { RecoveryPoints } from './recovery-points';

@Global()
@Module({ providers: [IdempotencyService, RecoveryPoints], exports: [IdempotencyService, RecoveryPoints] })
export class IdempotencyModule {}
