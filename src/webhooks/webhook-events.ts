/** The event types of README "Webhooks", in the order the API lists them. */
export const WEBHOOK_EVENT_TYPES = [
  'payment.created',
  'payment.escrowed',
  'payment.released',
  'payment.refunded',
  'payment.failed',
  'job.completed',
  'job.failed',
  'job.canceled',
  'job.expired',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Standard Webhooks secrets are base64 with this prefix. */
export const SECRET_PREFIX = 'whsec_';
