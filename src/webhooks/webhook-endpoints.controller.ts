import { Body, Controller, Get, HttpCode, Param, Query } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import type { Principal } from '../auth/api-keys';
import { CurrentPrincipal, Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED, POST } from '../common/api-errors';
import { DeleteRoute, PostRoute } from '../common/write-routes';
import { decodeCursor, encodeCursor } from '../jobs/cursor';
import {
  CreateWebhookEndpointDto,
  ListWebhookQuery,
  WebhookDeliveryListView,
  WebhookDeliveryView,
  WebhookEndpointListView,
  WebhookEndpointView,
  WebhookEndpointWithSecretView,
} from './dto/webhook.dto';
import { decodeSeqCursor, encodeSeqCursor, WebhookEndpointsService } from './webhook-endpoints.service';
import { toDeliveryView, toEndpointView, toEndpointWithSecretView } from './webhook.view';

const ENDPOINT_ID = { name: 'endpoint_id', example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' };

@ApiTags('webhooks')
@ApiSecurity('api-key')
@Controller('v1/webhook-endpoints')
export class WebhookEndpointsController {
  constructor(private readonly endpoints: WebhookEndpointsService) {}

  @PostRoute()
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'Register a webhook endpoint',
    description:
      "A client's endpoint receives the events of its own jobs and payments; an admin's, every event. " +
      'The URL must be https, or http to a public address (loopback/private/link-local only with WEBHOOK_ALLOW_PRIVATE_URLS=true): ' +
      "400 WEBHOOK_URL_NOT_ALLOWED otherwise. The signing secret is in this answer and in a rotation's only.",
  })
  @ApiCreatedResponse({ type: WebhookEndpointWithSecretView })
  @ApiErrors(KEYED, POST, 'WEBHOOK_URL_NOT_ALLOWED')
  async create(
    @CurrentPrincipal() principal: Principal,
    @Body() body: CreateWebhookEndpointDto,
  ): Promise<WebhookEndpointWithSecretView> {
    return toEndpointWithSecretView(await this.endpoints.create(principal, body));
  }

  @Get()
  @Roles('client', 'admin')
  @ApiOperation({ summary: 'Your webhook endpoints (admin: all), newest first' })
  @ApiOkResponse({ type: WebhookEndpointListView })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  async list(
    @CurrentPrincipal() principal: Principal,
    @Query() query: ListWebhookQuery,
  ): Promise<WebhookEndpointListView> {
    const limit = query.limit ?? 20;
    const rows = await this.endpoints.list(principal, query.cursor ? decodeCursor(query.cursor) : null, limit + 1);
    const page = rows.slice(0, limit);
    return {
      items: page.map(toEndpointView),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1].endpoint_id) : null,
    };
  }

  @Get(':endpoint_id')
  @Roles('client', 'admin')
  @ApiParam(ENDPOINT_ID)
  @ApiOkResponse({ type: WebhookEndpointView })
  @ApiErrors(KEYED, 'WEBHOOK_ENDPOINT_NOT_FOUND')
  async get(
    @CurrentPrincipal() principal: Principal,
    @Param('endpoint_id') endpointId: string,
  ): Promise<WebhookEndpointView> {
    return toEndpointView(await this.endpoints.get(principal, endpointId));
  }

  @DeleteRoute(':endpoint_id')
  @HttpCode(204)
  @Roles('client', 'admin')
  @ApiOperation({ summary: 'Delete an endpoint; its pending deliveries are dropped' })
  @ApiParam(ENDPOINT_ID)
  @ApiNoContentResponse()
  @ApiErrors(KEYED, 'WEBHOOK_ENDPOINT_NOT_FOUND')
  async delete(@CurrentPrincipal() principal: Principal, @Param('endpoint_id') endpointId: string): Promise<void> {
    await this.endpoints.delete(principal, endpointId);
  }

  @PostRoute(':endpoint_id/rotate-secret')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'Rotate the signing secret',
    description:
      'Answers the new secret. For the next 24 hours (WEBHOOK_SECRET_OVERLAP_SECONDS) every webhook carries two signatures, ' +
      'one per secret, in `webhook-signature`, so the receiver can switch secrets without missing an event.',
  })
  @ApiParam(ENDPOINT_ID)
  @ApiOkResponse({ type: WebhookEndpointWithSecretView })
  @ApiErrors(KEYED, POST, 'WEBHOOK_ENDPOINT_NOT_FOUND')
  async rotate(
    @CurrentPrincipal() principal: Principal,
    @Param('endpoint_id') endpointId: string,
  ): Promise<WebhookEndpointWithSecretView> {
    return toEndpointWithSecretView(await this.endpoints.rotateSecret(principal, endpointId));
  }

  @Get(':endpoint_id/deliveries')
  @Roles('client', 'admin')
  @ApiOperation({
    summary: "The endpoint's deliveries, newest first, with their attempts",
    description:
      'Each delivery is one event for this endpoint: its status (pending, delivered, failed: the retry schedule is spent), ' +
      'attempts made, the last status code and error, when it was last tried and when it is next due.',
  })
  @ApiParam(ENDPOINT_ID)
  @ApiOkResponse({ type: WebhookDeliveryListView })
  @ApiErrors(KEYED, 'VALIDATION_FAILED', 'WEBHOOK_ENDPOINT_NOT_FOUND')
  async deliveries(
    @CurrentPrincipal() principal: Principal,
    @Param('endpoint_id') endpointId: string,
    @Query() query: ListWebhookQuery,
  ): Promise<WebhookDeliveryListView> {
    const limit = query.limit ?? 20;
    const rows = await this.endpoints.deliveriesOf(
      principal,
      endpointId,
      query.cursor ? decodeSeqCursor(query.cursor) : null,
      limit + 1,
    );
    const page = rows.slice(0, limit);
    return {
      items: page.map(toDeliveryView),
      next_cursor: rows.length > limit ? encodeSeqCursor(page[page.length - 1].seq) : null,
    };
  }

  @PostRoute(':endpoint_id/deliveries/:delivery_id/retry')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'Send a delivery again now',
    description:
      'A pending delivery is tried at once and keeps its retry schedule; a delivered or failed one gets one more attempt. ' +
      'A disabled endpoint is enabled again. While an attempt is in flight nothing changes (an event is never sent twice at once).',
  })
  @ApiParam(ENDPOINT_ID)
  @ApiParam({ name: 'delivery_id', example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5d' })
  @ApiOkResponse({ type: WebhookDeliveryView })
  @ApiErrors(KEYED, POST, 'WEBHOOK_ENDPOINT_NOT_FOUND', 'WEBHOOK_DELIVERY_NOT_FOUND')
  async retry(
    @CurrentPrincipal() principal: Principal,
    @Param('endpoint_id') endpointId: string,
    @Param('delivery_id') deliveryId: string,
  ): Promise<WebhookDeliveryView> {
    return toDeliveryView(await this.endpoints.retry(principal, endpointId, deliveryId));
  }
}
