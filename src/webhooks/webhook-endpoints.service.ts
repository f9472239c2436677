import { Inject, Injectable } from '@nestjs/common';
import { uuidv7 } from 'uuidv7';
import type { Principal } from '../auth/api-keys';
import { DomainError, validationError } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { WebhookDeliveriesRepository, type DeliveryListRow } from './webhook-deliveries.repository';
import { WebhookEndpointsRepository } from './webhook-endpoints.repository';
import { WEBHOOK_EVENT_TYPES } from './webhook-events';
import { WebhookSecretBox } from './webhook-secret-box';
import { newWebhookSecret } from './webhook-signer';
import { checkWebhookUrl } from './webhook-url';
import type { WebhookEndpoint } from './webhook.entities';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Endpoint registration and management. A client's endpoints receive the events of its
 * own payments and jobs and are visible to it and to admins; an admin's endpoints
 * receive every event. Another client's endpoint is "not found".
 */
@Injectable()
export class WebhookEndpointsService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly endpoints: WebhookEndpointsRepository,
    private readonly deliveries: WebhookDeliveriesRepository,
    private readonly secrets: WebhookSecretBox,
  ) {}

  async create(
    principal: Principal,
    input: { url: string; event_types?: string[]; description?: string },
  ): Promise<WebhookEndpoint> {
    await checkWebhookUrl(input.url, this.config.webhookAllowPrivateUrls);
    const secret = newWebhookSecret();
    const endpoint = await this.endpoints.insert({
      endpointId: uuidv7(),
      clientId: principal.role === 'client' ? principal.id : null,
      createdBy: principal.id,
      url: input.url,
      eventTypes: input.event_types ?? [...WEBHOOK_EVENT_TYPES],
      description: input.description ?? null,
      secret: this.secrets.seal(secret),
    });
    // The answer shows the secret in the clear, this once.
    return { ...endpoint, secret };
  }

  list(principal: Principal, before: string | null, limit: number): Promise<WebhookEndpoint[]> {
    return this.endpoints.list(scope(principal), before, limit);
  }

  async get(principal: Principal, endpointId: string): Promise<WebhookEndpoint> {
    const endpoint = UUID.test(endpointId) ? await this.endpoints.get(endpointId, scope(principal)) : undefined;
    if (!endpoint) throw endpointNotFound(endpointId);
    return endpoint;
  }

  async delete(principal: Principal, endpointId: string): Promise<void> {
    if (!UUID.test(endpointId) || !(await this.endpoints.delete(endpointId, scope(principal))))
      throw endpointNotFound(endpointId);
  }

  async rotateSecret(principal: Principal, endpointId: string): Promise<WebhookEndpoint> {
    const secret = newWebhookSecret();
    const rotated = UUID.test(endpointId)
      ? await this.endpoints.rotateSecret(
          endpointId,
          scope(principal),
          this.secrets.seal(secret),
          this.config.webhookSecretOverlapSeconds,
        )
      : undefined;
    if (!rotated) throw endpointNotFound(endpointId);
    return { ...rotated, secret };
  }

  async deliveriesOf(
    principal: Principal,
    endpointId: string,
    beforeSeq: string | null,
    limit: number,
  ): Promise<DeliveryListRow[]> {
    await this.get(principal, endpointId);
    return this.deliveries.listForEndpoint(endpointId, beforeSeq, limit);
  }

  /** Due now; a disabled endpoint is enabled again (the operator says the receiver is fixed). */
  async retry(principal: Principal, endpointId: string, deliveryId: string): Promise<DeliveryListRow> {
    await this.get(principal, endpointId);
    if (!UUID.test(deliveryId)) throw deliveryNotFound(deliveryId);
    const found = await this.tx.run(async (sql) => {
      const exists = await this.deliveries.retryNow(
        sql,
        endpointId,
        deliveryId,
        this.config.webhookRetrySchedule.length,
      );
      if (exists) await this.endpoints.enable(sql, endpointId);
      return exists;
    });
    const delivery = found ? await this.deliveries.findForEndpoint(endpointId, deliveryId) : undefined;
    if (!delivery) throw deliveryNotFound(deliveryId);
    return delivery;
  }
}

/** Whose endpoints the principal may see: a client its own, an admin all (null). */
const scope = (principal: Principal): string | null => (principal.role === 'client' ? principal.id : null);

const endpointNotFound = (id: string) =>
  new DomainError('WEBHOOK_ENDPOINT_NOT_FOUND', `webhook endpoint ${id.slice(0, 100)} not found`);
const deliveryNotFound = (id: string) =>
  new DomainError('WEBHOOK_DELIVERY_NOT_FOUND', `webhook delivery ${id.slice(0, 100)} not found`);

/** Delivery list cursors: the last row's sequence number, base64url. */
export const encodeSeqCursor = (seq: string) => Buffer.from(seq, 'utf8').toString('base64url');
export function decodeSeqCursor(cursor: string): string {
  const seq = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^\d{1,18}$/.test(seq))
    throw validationError('cursor is not valid', { fields: { cursor: ['not a cursor from a previous page'] } });
  return seq;
}
