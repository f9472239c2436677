import { Controller, Get, Module } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorService,
  TerminusModule,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { Public } from '../auth/auth.guard';
import { WalletDaemonClient } from '../wallet-daemon-client/wallet-daemon.client';
import { WalletDaemonModule } from '../wallet-daemon-client/wallet-daemon.module';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    private readonly indicators: HealthIndicatorService,
    private readonly daemon: WalletDaemonClient,
  ) {}

  /** The process is up. */
  @Get('live')
  @Public()
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  /** Ready to take money: the database and the wallet daemon answer. */
  @Get('ready')
  @Public()
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.db.pingCheck('database', { timeout: 2000 }),
      async () => {
        const indicator = this.indicators.check('wallet_daemon');
        try {
          await this.daemon.ping();
          return indicator.up();
        } catch (error) {
          return indicator.down({ message: (error as Error).message });
        }
      },
    ]);
  }
}

@Module({
  imports: [TerminusModule, WalletDaemonModule],
  controllers: [HealthController],
})
export class HealthModule {}
