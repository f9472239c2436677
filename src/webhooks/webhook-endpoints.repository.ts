import { Injectable } from '@nestjs/common';
import { Transactions, type Sql } from '../database/transactions';
import type { WebhookEndpoint } from './webhook.entities';

/** Owns the webhook_endpoints table. `clientId` null in a lookup means "any owner" (an admin asking). */
@Injectable()
export class WebhookEndpointsRepository {
  constructor(private readonly tx: Transactions) {}

  insert(row: {
    endpointId: string;
    clientId: string | null;
    createdBy: string;
    url: string;
    eventTypes: string[];
    description: string | null;
    secret: string;
  }): Promise<WebhookEndpoint> {
    return this.tx.sql.one<WebhookEndpoint>(
      `INSERT INTO webhook_endpoints (endpoint_id, client_id, created_by, url, event_types, description, secret)
       VALUES ($1, $2, $3, $4, $5::text[], $6, $7) RETURNING *`,
      [row.endpointId, row.clientId, row.createdBy, row.url, row.eventTypes, row.description, row.secret],
    ) as Promise<WebhookEndpoint>;
  }

  /** Newest first; a client sees its own, an admin (clientId null) all. */
  list(clientId: string | null, before: string | null, limit: number): Promise<WebhookEndpoint[]> {
    return this.tx.sql.rows<WebhookEndpoint>(
      `SELECT * FROM webhook_endpoints
        WHERE ($1::varchar IS NULL OR client_id = $1) AND ($2::uuid IS NULL OR endpoint_id < $2)
        ORDER BY endpoint_id DESC LIMIT $3`,
      [clientId, before, limit],
    );
  }

  get(endpointId: string, clientId: string | null): Promise<WebhookEndpoint | undefined> {
    return this.tx.sql.one<WebhookEndpoint>(
      `SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::varchar IS NULL OR client_id = $2)`,
      [endpointId, clientId],
    );
  }

  /** Its deliveries and their attempts go with it (ON DELETE CASCADE); the events stay for other endpoints. */
  async delete(endpointId: string, clientId: string | null): Promise<boolean> {
    const rows = await this.tx.sql.rows(
      `DELETE FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::varchar IS NULL OR client_id = $2) RETURNING 1`,
      [endpointId, clientId],
    );
    return rows.length > 0;
  }

  /** The current secret becomes the previous one, signing alongside the new one for `overlapSeconds`. */
  rotateSecret(
    endpointId: string,
    clientId: string | null,
    secret: string,
    overlapSeconds: number,
  ): Promise<WebhookEndpoint | undefined> {
    return this.tx.sql.one<WebhookEndpoint>(
      `UPDATE webhook_endpoints
          SET previous_secret = secret, secret = $3,
              previous_secret_expires_at = now() + $4::int * interval '1 second', updated_at = now()
        WHERE endpoint_id = $1 AND ($2::varchar IS NULL OR client_id = $2)
       RETURNING *`,
      [endpointId, clientId, secret, overlapSeconds],
    );
  }

  /** A manual retry on a disabled endpoint switches it back on (the operator says it is fixed). */
  async enable(sql: Sql, endpointId: string): Promise<void> {
    await sql.rows(
      `UPDATE webhook_endpoints SET enabled = true, failing_since = NULL, disabled_at = NULL, disabled_reason = NULL,
              updated_at = now()
        WHERE endpoint_id = $1 AND NOT enabled`,
      [endpointId],
    );
  }
}
