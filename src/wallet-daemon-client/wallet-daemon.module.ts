import { Module } from '@nestjs/common';
import { HttpWalletDaemonClient } from './http-wallet-daemon.client';
import { WalletDaemonClient } from './wallet-daemon.client';

@Module({
  providers: [{ provide: WalletDaemonClient, useClass: HttpWalletDaemonClient }],
  exports: [WalletDaemonClient],
})
export class WalletDaemonModule {}
