import { iso } from '../common/format';
import type { WebhookDeliveryView, WebhookEndpointView, WebhookEndpointWithSecretView } from './dto/webhook.dto';
import type { DeliveryListRow } from './webhook-deliveries.repository';
import type { WebhookEndpoint } from './webhook.entities';

/** An endpoint as the API shows it: never its secrets. */
export function toEndpointView(e: WebhookEndpoint): WebhookEndpointView {
  return {
    endpoint_id: e.endpoint_id,
    url: e.url,
    event_types: e.event_types,
    description: e.description,
    client_id: e.client_id,
    enabled: e.enabled,
    disabled_reason: e.disabled_reason,
    failing_since: iso(e.failing_since),
    previous_secret_expires_at:
      e.previous_secret_expires_at && new Date(e.previous_secret_expires_at) > new Date()
        ? iso(e.previous_secret_expires_at)
        : null,
    created_at: iso(e.created_at) as string,
  };
}

/** Only at creation and rotation. */
export function toEndpointWithSecretView(e: WebhookEndpoint): WebhookEndpointWithSecretView {
  return { ...toEndpointView(e), secret: e.secret };
}

export function toDeliveryView(d: DeliveryListRow): WebhookDeliveryView {
  return {
    delivery_id: d.delivery_id,
    event_id: d.event_id,
    type: d.type,
    status: d.status,
    attempt: d.attempts,
    status_code: d.last_status_code,
    error: d.last_error,
    attempted_at: iso(d.last_attempt_at),
    next_attempt_at: iso(d.next_attempt_at),
    delivered_at: iso(d.delivered_at),
    created_at: iso(d.created_at) as string,
    attempts: (d.attempt_log ?? []).map((a) => ({
      attempt: a.attempt,
      status_code: a.status_code,
      error: a.error,
      duration_ms: a.duration_ms,
      at: iso(new Date(a.attempted_at)) as string,
    })),
  };
}
