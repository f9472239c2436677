/**
 * Domain errors carry a stable code; the one table below maps codes to HTTP statuses,
 * and the global exception filter renders the one error shape of docs/errors.md.
 */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  INVALID_AMOUNT: 400,
  INVALID_ADDRESS: 400,
  UNSUPPORTED_CURRENCY: 400,
  PAYER_ADDRESS_REQUIRED: 400,
  ESCROW_TIMEOUT_OUT_OF_RANGE: 400,
  EXTENSION_OUT_OF_RANGE: 400,
  WEBHOOK_URL_NOT_ALLOWED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  PAYMENT_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  WEBHOOK_ENDPOINT_NOT_FOUND: 404,
  WEBHOOK_DELIVERY_NOT_FOUND: 404,
  PROVIDER_NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INVALID_JOB_TRANSITION: 409,
  JOB_NOT_ASSIGNED: 409,
  JOB_EXPIRED: 409,
  JOB_ALREADY_PAID: 409,
  MINER_NOT_REGISTERED: 409,
  PAYMENT_NOT_ESCROWED: 409,
  PAYMENT_ALREADY_SETTLED: 409,
  PAYMENT_JOB_MISMATCH: 409,
  PAYMENT_NO_PAYEE: 409,
  REFUND_NOT_ALLOWED: 409,
  IDEMPOTENCY_IN_PROGRESS: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  INSUFFICIENT_FUNDS: 402,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  WALLET_DAEMON_UNAVAILABLE: 503,
  NO_PROVIDER_AVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'DomainError';
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: 'job' | 'payment', id: string) =>
  new DomainError(what === 'job' ? 'JOB_NOT_FOUND' : 'PAYMENT_NOT_FOUND', `${what} ${id} not found`);

export const validationError = (message: string, details: Record<string, unknown>) =>
  new DomainError('VALIDATION_FAILED', message, details);
