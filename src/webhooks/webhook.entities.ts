/**
 * Rows of the webhook tables as raw SQL returns them (column names; the schema is in
 * migration 1764300000000-Webhooks).
 */
export interface WebhookEndpoint {
  endpoint_id: string;
  client_id: string | null;
  created_by: string;
  url: string;
  event_types: string[];
  description: string | null;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  enabled: boolean;
  failing_since: Date | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface WebhookDelivery {
  delivery_id: string;
  seq: string;
  endpoint_id: string;
  event_id: string;
  status: DeliveryStatus;
  attempts: number;
  schedule_step: number;
  next_attempt_at: Date | null;
  locked_until: Date | null;
  lease_token: string | null;
  last_status_code: number | null;
  last_error: string | null;
  last_attempt_at: Date | null;
  delivered_at: Date | null;
  created_at: Date;
}

export interface WebhookAttempt {
  delivery_id: string;
  attempt: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  attempted_at: Date;
}

/** A claimed delivery with what its attempt needs: the event and the endpoint's URL and secrets. */
export interface ClaimedDelivery {
  delivery_id: string;
  endpoint_id: string;
  event_id: string;
  lease_token: string;
  attempts: number;
  type: string;
  reason: string | null;
  payment: Record<string, unknown> | null;
  job: Record<string, unknown> | null;
  event_created_at: Date;
  url: string;
  /** The live secrets: the current one, and the previous one during a rotation's overlap. */
  secrets: string[];
}
