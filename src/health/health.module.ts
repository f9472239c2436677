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
import { PaymentProviders } from '../providers/payment-providers.service';
import { ProvidersModule } from '../providers/providers.module';

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
    private readonly providers: PaymentProviders,
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

  /** Ready to take money: the database answers, and so does at least one payment provider (wallet daemon). */
  @Get('ready')
  @Public()
  @ApiOperation({
    summary:
      'Readiness: 200 when the database and at least one payment provider (wallet daemon) answer (no key, never rate limited)',
  })
  @Unavailable('Not ready: the database, or every payment provider (wallet daemon), does not answer')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.db.pingCheck('database', { timeout: 2000 }),
      async () => {
        // Each provider on its own: one down is routed around, so only all down is not ready.
        const indicator = this.indicators.check('wallet_daemon');
        const answers = await Promise.all(
          this.providers.ids().map(async (id) => {
            try {
              await this.providers.client(id)?.ping();
              return [id, 'up'] as const;
            } catch (error) {
              return [id, `down: ${(error as Error).message}`] as const;
            }
          }),
        );
        const providers = Object.fromEntries(answers);
        return answers.some(([, state]) => state === 'up')
          ? indicator.up({ providers })
          : indicator.down({ providers });
      },
    ]);
  }
}

@Module({
  imports: [TerminusModule, ProvidersModule],
  controllers: [HealthController],
})
export class HealthModule {}
