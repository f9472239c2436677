import { applyDecorators, Controller, Get, Module } from '@nestjs/common';
import { ApiExtraModels, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorService,
  TerminusModule,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { Public } from '../auth/auth.guard';
import { ErrorView, errorExample } from '../common/api-errors';
import { WalletDaemonClient } from '../wallet-daemon-client/wallet-daemon.client';
import { WalletDaemonModule } from '../wallet-daemon-client/wallet-daemon.module';

/**
 * A probe's 503 in the document: Terminus throws a plain 503 HttpException, which the
 * exception filter renders in the one error shape as INTERNAL_ERROR (a 5xx with no code of its own).
 */
const Unavailable = (why: string) =>
  applyDecorators(
    ApiExtraModels(ErrorView),
    ApiServiceUnavailableResponse({
      type: ErrorView,
      description: `${why}; \`code\` is \`INTERNAL_ERROR\``,
      examples: {
        INTERNAL_ERROR: { summary: why, value: { ...errorExample('INTERNAL_ERROR'), status_code: 503 } },
      },
    }),
  );

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
  @ApiOperation({ summary: 'Liveness: 200 while the process runs (no key, never rate limited)' })
  @Unavailable('The process is shutting down')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  /** Ready to take money: the database and the wallet daemon answer. */
  @Get('ready')
  @Public()
  @ApiOperation({
    summary: 'Readiness: 200 when the database and the wallet daemon answer (no key, never rate limited)',
  })
  @Unavailable('Not ready: the database or the wallet daemon does not answer')
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
