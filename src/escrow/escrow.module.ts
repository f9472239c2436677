import { Module } from '@nestjs/common';
import { ProvidersModule } from '../providers/providers.module';
import { EscrowService } from './escrow.service';

/** Escrow calls, each to its payment's provider; re-exports the providers (routing) to Payments. */
@Module({
  imports: [ProvidersModule],
  providers: [EscrowService],
  exports: [EscrowService, ProvidersModule],
})
export class EscrowModule {}
