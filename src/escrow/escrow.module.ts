import { Module } from '@nestjs/common';
import { WalletDaemonModule } from '../wallet-daemon-client/wallet-daemon.module';
import { EscrowService } from './escrow.service';

@Module({
  imports: [WalletDaemonModule],
  providers: [EscrowService],
  exports: [EscrowService],
})
export class EscrowModule {}
