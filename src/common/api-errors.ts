import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiExtraModels, ApiProperty, ApiResponse, getSchemaPath } from '@nestjs/swagger';
import { ERROR_STATUS, ErrorCode } from './errors';

/**
 * OpenAPI for error answers. A route lists the codes it can answer with `@ApiErrors(...)`;
 * each code's HTTP status comes from ERROR_STATUS, the table the exception filter uses,
 * so the document and the behaviour cannot drift apart.
 */

/** The one error shape of every answer ≥ 400 (rendered by GlobalErrorFilter). */
export class ErrorView {
  @ApiProperty({ example: 409 }) status_code: number;
  @ApiProperty({ enum: Object.keys(ERROR_STATUS), example: 'PAYMENT_ALREADY_SETTLED', description: 'Stable code' })
  code: string;
  @ApiProperty({ example: 'Payment 0193a5b0-7c1f-7000-8000-000000000001 is already released' }) message: string;
  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    example: {},
    description: 'Validation errors carry `fields`: `{ "field.path": ["message", …] }`',
  })
  details: Record<string, unknown>;
  @ApiProperty({ example: '5b1f8f3e-2c4d-4b7a-9f7e-3f2a1c0d9e8b', description: 'X-Request-Id, or one generated' })
  request_id: string;
}

const PAYMENT_ID = '0193a5b0-7c1f-7000-8000-000000000001';
const JOB_ID = '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c';

/**
 * One example per code: what a client sees. A code without one still documents its
 * status, with a generic message (a new code must not break the build of a route that
 * does not list it).
 */
const EXAMPLES: Partial<Record<ErrorCode, { message: string; details?: Record<string, unknown> }>> = {
  VALIDATION_FAILED: {
    message: 'Request validation failed',
    details: { fields: { ttl_seconds: ['ttl_seconds must not be less than 1'] } },
  },
  INVALID_AMOUNT: {
    message: 'amount has 9 decimal places; BTC allows at most 8',
    details: {
      fields: { payment_amount: ['amount has 9 decimal places; BTC allows at most 8'] },
      reason: 'too_many_decimals',
      minimum: '0.00000001',
      maximum: '21000000.00000000',
    },
  },
  INVALID_ADDRESS: {
    message: 'payer_address is not a valid BTC regtest address',
    details: { fields: { payer_address: ['not a valid BTC regtest address'] } },
  },
  UNSUPPORTED_CURRENCY: {
    message: 'Currency XYZ is not supported',
    details: { fields: { payment_currency: ['must be one of BTC'] } },
  },
  PAYER_ADDRESS_REQUIRED: {
    message: 'payer_address is required: no wallet address is configured for this client',
    details: { fields: { payer_address: ['required'] } },
  },
  ESCROW_TIMEOUT_OUT_OF_RANGE: {
    message: 'escrow_timeout_seconds must be within 60..2592000',
    details: { fields: { escrow_timeout_seconds: ['must be within 60..2592000'] } },
  },
  EXTENSION_OUT_OF_RANGE: {
    message:
      'Extending by 86400 s would put the escrow 2678400 s past escrowed_at; ESCROW_MAX_TIMEOUT_SECONDS is 2592000',
    details: { fields: { seconds: ['at most 3600 more seconds are allowed'] }, max_seconds: 3600 },
  },
  UNAUTHORIZED: { message: 'Missing or unknown X-Api-Key' },
  FORBIDDEN: { message: 'Role miner may not call this route' },
  NOT_FOUND: { message: 'Not found' },
  JOB_NOT_FOUND: { message: `job ${JOB_ID} not found` },
  PAYMENT_NOT_FOUND: { message: `payment ${PAYMENT_ID} not found` },
  ROUTE_NOT_FOUND: { message: 'Cannot GET /v1/nothing' },
  PAYLOAD_TOO_LARGE: { message: 'Request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { message: 'Content-Type text/plain is not supported; send application/json' },
  INVALID_JOB_TRANSITION: { message: `Job ${JOB_ID} is completed`, details: { job_id: JOB_ID, state: 'completed' } },
  JOB_NOT_ASSIGNED: { message: `Job ${JOB_ID} is not assigned to miner miner-1` },
  JOB_EXPIRED: { message: `Job ${JOB_ID} passed its deadline at 2026-11-23T12:15:00.000Z` },
  JOB_ALREADY_PAID: { message: `Job ${JOB_ID} already has a payment` },
  MINER_NOT_REGISTERED: { message: 'Miner miner-1 has no payout address' },
  PAYMENT_NOT_ESCROWED: {
    message: `Payment ${PAYMENT_ID} is pending, not escrowed`,
    details: { payment_id: PAYMENT_ID, status: 'pending' },
  },
  PAYMENT_ALREADY_SETTLED: {
    message: `Payment ${PAYMENT_ID} is already released`,
    details: { payment_id: PAYMENT_ID, status: 'released' },
  },
  PAYMENT_JOB_MISMATCH: {
    message: `Payment ${PAYMENT_ID} does not belong to job ${JOB_ID}`,
    details: { payment_job_id: '0193a5b0-7c1e-7d2a-9c4b-000000000002' },
  },
  PAYMENT_NO_PAYEE: { message: `Payment ${PAYMENT_ID} has no assigned miner to pay yet` },
  REFUND_NOT_ALLOWED: {
    message: `Job ${JOB_ID} is running; only an admin can refund it now`,
    details: { job_state: 'running' },
  },
  IDEMPOTENCY_IN_PROGRESS: { message: 'A request with this Idempotency-Key is still being processed' },
  IDEMPOTENCY_KEY_REUSED: { message: 'This Idempotency-Key was used with a different request body' },
  INSUFFICIENT_FUNDS: { message: 'The payer has not enough unlocked funds' },
  RATE_LIMITED: { message: 'ThrottlerException: Too Many Requests' },
  INTERNAL_ERROR: { message: 'Internal server error' },
  WALLET_DAEMON_UNAVAILABLE: { message: 'The wallet daemon did not answer' },
  WEBHOOK_URL_NOT_ALLOWED: { message: 'url must be https (or http)' },
  WEBHOOK_ENDPOINT_NOT_FOUND: { message: 'webhook endpoint 0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5e not found' },
  WEBHOOK_DELIVERY_NOT_FOUND: { message: 'webhook delivery 0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5d not found' },
  PROVIDER_NOT_FOUND: { message: 'payment provider backup not found' },
  NO_PROVIDER_AVAILABLE: {
    message:
      'No payment provider can hold 0.001 BTC now (none serves it at this amount, or every one that does is draining or failing); nothing was created',
    details: { currency: 'BTC' },
  },
};

/** An example answer with `code`, in the one error shape. */
export function errorExample(code: ErrorCode): ErrorView {
  const { message, details } = EXAMPLES[code] ?? { message: `${code.toLowerCase().replace(/_/g, ' ')}` };
  return {
    status_code: ERROR_STATUS[code],
    code,
    message,
    details: details ?? {},
    request_id: '5b1f8f3e-2c4d-4b7a-9f7e-3f2a1c0d9e8b',
  };
}

/** Every route that needs an API key: the rate limit runs first, then the key and role check. */
export const KEYED: readonly ErrorCode[] = ['UNAUTHORIZED', 'FORBIDDEN', 'RATE_LIMITED'];

/**
 * Every POST: a body that is not a JSON object, too deep or too large (the parser's
 * limits), another content type; and the Idempotency-Key rules (a bad key is a 400).
 */
export const POST: readonly ErrorCode[] = [
  'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'IDEMPOTENCY_IN_PROGRESS',
  'IDEMPOTENCY_KEY_REUSED',
];

/**
 * The payment fields of a create (POST /v1/payments, POST /v1/jobs with payment_amount),
 * and its routing: no provider may take it now (503, nothing created).
 */
export const PAYMENT_TERMS: readonly ErrorCode[] = [
  'INVALID_AMOUNT',
  'UNSUPPORTED_CURRENCY',
  'PAYER_ADDRESS_REQUIRED',
  'INVALID_ADDRESS',
  'ESCROW_TIMEOUT_OUT_OF_RANGE',
  'NO_PROVIDER_AVAILABLE',
];

/** Metadata key holding the codes a route declared (read by nothing at run time; guards against a second call). */
export const API_ERRORS_KEY = 'api-errors:codes';

/**
 * Documents the error answers of a route: one response per HTTP status, with the
 * ErrorView schema, the codes in its description and one example per code. Codes may
 * repeat across groups. Use once per route: a second call would merge descriptions.
 */
export function ApiErrors(...groups: (ErrorCode | readonly ErrorCode[])[]): MethodDecorator {
  const codes = [...new Set(groups.flat())];
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERROR_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses = [...byStatus.entries()]
    .sort(([a], [b]) => a - b)
    .map(([status, list]) =>
      ApiResponse({
        status,
        description: `Error; \`code\` is one of: ${list.map((code) => `\`${code}\``).join(', ')}`,
        // Content spelled out, not `type`: errors are JSON even on a route that @ApiProduces CSV.
        content: {
          'application/json': {
            schema: { $ref: getSchemaPath(ErrorView) },
            examples: Object.fromEntries(
              list.map((code) => [code, { summary: errorExample(code).message, value: errorExample(code) }]),
            ),
          },
        },
      }),
    );
  const once: MethodDecorator = (target, key, descriptor) => {
    if (Reflect.getMetadata(API_ERRORS_KEY, descriptor.value as object))
      throw new Error(`@ApiErrors used twice on ${String(key)}: list all codes in one call`);
  };
  return applyDecorators(once, SetMetadata(API_ERRORS_KEY, codes), ApiExtraModels(ErrorView), ...responses);
}
