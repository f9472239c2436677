import { Controller, Get, HttpCode, Param } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED, POST } from '../common/api-errors';
import { PostRoute } from '../common/write-routes';
import { ProviderListView, ProviderView } from './dto/provider.dto';
import { ProvidersAdminService } from './providers-admin.service';

const PROVIDER_ID = { name: 'provider_id', example: 'backup', description: 'A provider id of PAYMENT_PROVIDERS' };

@ApiTags('providers')
@ApiSecurity('api-key')
@Controller('v1/providers')
export class ProvidersController {
  constructor(private readonly providers: ProvidersAdminService) {}

  @Get()
  @Roles('admin')
  @ApiOperation({
    summary: 'The payment providers (wallet daemons) with their circuit, drain flag, counters and holdings',
    description:
      'In the order of PAYMENT_PROVIDERS. `held` is what each provider holds for this coordinator now, per currency it serves ' +
      '(escrowed payments and decided ones not yet settled), as exact decimal strings.',
  })
  @ApiOkResponse({ type: ProviderListView })
  @ApiErrors(KEYED)
  list(): Promise<ProviderListView> {
    return this.providers.list();
  }

  @PostRoute(':provider_id/drain')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({
    summary: 'Drain a provider: no new escrows go to it; the ones it holds settle there as usual',
    description:
      'Shared by every instance (each sees it within PROVIDER_STATE_REFRESH_MS). Draining twice is the same.',
  })
  @ApiParam(PROVIDER_ID)
  @ApiOkResponse({ type: ProviderView })
  @ApiErrors(KEYED, POST, 'PROVIDER_NOT_FOUND')
  drain(@Param('provider_id') providerId: string): Promise<ProviderView> {
    return this.providers.setDraining(providerId, true);
  }

  @PostRoute(':provider_id/resume')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Resume a drained provider: it takes new escrows again' })
  @ApiParam(PROVIDER_ID)
  @ApiOkResponse({ type: ProviderView })
  @ApiErrors(KEYED, POST, 'PROVIDER_NOT_FOUND')
  resume(@Param('provider_id') providerId: string): Promise<ProviderView> {
    return this.providers.setDraining(providerId, false);
  }
}
