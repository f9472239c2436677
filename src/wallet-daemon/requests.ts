import Decimal from 'decimal.js';
import { MAX_ADDRESS_LENGTH } from '../common/addresses';
import { parseAmount } from './amounts';
import { Currency, CurrencyRegistry } from './currencies';
import { invalidRequest, WalletDaemonError } from './errors';
import { FaultSettings, faultSettingsError } from './faults';
import { readIdempotencyKey } from './idempotency';

/** Request bodies after validation. Unknown fields are ignored. */
export interface CreateEscrowRequest {
  paymentId: string;
  amount: Decimal;
  currency: Currency;
  payer: string;
  timeoutSeconds: number;
}

export interface SettleEscrowRequest {
  escrowId: string;
  /** Release: the payee. Refund: the refund address. Checked against the escrow's currency later. */
  recipient: string;
  /** When given, must match the escrow (ESCROW_MISMATCH otherwise). */
  expectedAddress?: string;
  /**
   * Refund: when given, must be the escrow's amount. Release: what the payee gets, at most
   * the escrow's amount (ESCROW_MISMATCH otherwise); less is a partial release whose rest
   * goes to `refundAddress` in the same transfer.
   */
  expectedAmount?: Decimal;
  /** Release only: where the rest of a partial release goes (required when `amount` is less than the escrow). */
  refundAddress?: string;
  reason: string | null;
}

/** A request to move a held escrow's expiry later (`POST /api/v1/escrow/extend`). */
export interface ExtendEscrowRequest {
  escrowId: string;
  expiresAt: Date;
}

export interface FaucetRequest {
  currency: Currency;
  address: string;
  amount: Decimal;
}

export const DEFAULT_TIMEOUT_SECONDS = 3600;
const MAX_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600;
const MAX_ID_LENGTH = 255;
const MAX_REASON_LENGTH = 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Body = Record<string, unknown>;

export function parseCreateEscrow(body: unknown, currencies: CurrencyRegistry): CreateEscrowRequest {
  const fields = asObject(body);
  const currency = currencyField(fields, currencies);
  return {
    paymentId: stringField(fields, 'payment_id', MAX_ID_LENGTH),
    amount: amountField(fields, 'amount'),
    currency,
    payer: addressField(fields, 'payer', currency, currencies),
    timeoutSeconds: timeoutField(fields),
  };
}

export function parseRelease(body: unknown): SettleEscrowRequest {
  return parseSettlement(asObject(body), 'payee');
}

export function parseRefund(body: unknown): SettleEscrowRequest {
  return parseSettlement(asObject(body), 'refund_address');
}

function parseSettlement(fields: Body, recipientField: 'payee' | 'refund_address'): SettleEscrowRequest {
  return {
    escrowId: escrowIdField(fields),
    recipient: stringField(fields, recipientField, MAX_ADDRESS_LENGTH),
    expectedAddress: fields.address === undefined ? undefined : stringField(fields, 'address', MAX_ADDRESS_LENGTH),
    expectedAmount: fields.amount === undefined ? undefined : amountField(fields, 'amount'),
    refundAddress:
      recipientField === 'payee' && fields.refund_address !== undefined && fields.refund_address !== null
        ? stringField(fields, 'refund_address', MAX_ADDRESS_LENGTH)
        : undefined,
    reason:
      fields.reason === undefined || fields.reason === null ? null : stringField(fields, 'reason', MAX_REASON_LENGTH),
  };
}

/** ISO-8601 with a zone (`2026-11-30T12:00:00.000Z`): what the coordinator sends as `expires_at`. */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;

export function parseExtendEscrow(body: unknown): ExtendEscrowRequest {
  const fields = asObject(body);
  const escrowId = escrowIdField(fields);
  const text = fields.expires_at;
  const expiresAt = typeof text === 'string' && ISO_INSTANT.test(text) ? new Date(text) : undefined;
  if (!expiresAt || Number.isNaN(expiresAt.getTime())) {
    throw invalidRequest('expires_at must be an ISO-8601 timestamp with a time zone');
  }
  return { escrowId, expiresAt };
}

/** Where each settlement action is sent as a single call: a batch item is that very call. */
export const SETTLEMENT_ROUTES = { release: '/api/v1/escrow/release', refund: '/api/v1/refund' } as const;
export type SettlementAction = keyof typeof SETTLEMENT_ROUTES;

/** Where a create is sent as a single call: a create-batch item is that very call. */
export const CREATE_ROUTE = '/api/v1/escrow/create';

/** At most this many items per settle-batch or create-batch call (the coordinator sends up to 500). */
export const MAX_BATCH_ITEMS = 500;

/**
 * One item of a batch route: the body and Idempotency-Key of the single call it stands
 * for. Its fields are validated per item, when it is run, so one bad item gets its own
 * 400 and the rest go on.
 */
export interface BatchItem {
  /** Always set on a batch route's items; a single call may come without one (then nothing is stored). */
  idempotencyKey?: string;
  /** The item without `idempotency_key` (and `action`): exactly the single call's body. */
  body: Record<string, unknown>;
}

/** One item of `POST /api/v1/escrow/settle-batch`: a single release or refund call. */
export interface BatchSettlement extends BatchItem {
  action: SettlementAction;
}

/** What a batch item stands for: its outcome, the single call's route, and that call's parsed body (or 400/404). */
export function parseBatchSettlement(item: BatchSettlement): {
  outcome: 'released' | 'refunded';
  route: string;
  request: SettleEscrowRequest;
} {
  const release = item.action === 'release';
  return {
    outcome: release ? 'released' : 'refunded',
    route: SETTLEMENT_ROUTES[item.action],
    request: release ? parseRelease(item.body) : parseRefund(item.body),
  };
}

/** The settle-batch envelope: `{ items: [...] }`, each with an action and an idempotency key, or 400. */
export function parseSettleBatch(body: unknown): BatchSettlement[] {
  return parseBatch(body, 'settlements', (fields, index) => {
    const { action, ...rest } = fields;
    if (action !== 'release' && action !== 'refund')
      throw invalidRequest(`items[${index}].action must be release or refund`);
    return { action, ...batchItem(rest, index) };
  });
}

/** The create-batch envelope: `{ items: [...] }`, each with an idempotency key, or 400. */
export function parseCreateBatch(body: unknown): BatchItem[] {
  return parseBatch(body, 'creates', batchItem);
}

function parseBatch<T>(body: unknown, what: string, parseItem: (fields: Body, index: number) => T): T[] {
  const { items } = asObject(body);
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH_ITEMS) {
    throw invalidRequest(`items must be an array of 1 to ${MAX_BATCH_ITEMS} ${what}`);
  }
  return items.map((raw, index) => parseItem(asObject(raw), index));
}

function batchItem(fields: Body, index: number): BatchItem {
  const { idempotency_key: idempotencyKey, ...body } = fields;
  if (typeof idempotencyKey !== 'string') throw invalidRequest(`items[${index}].idempotency_key must be a string`);
  return { idempotencyKey: readIdempotencyKey(idempotencyKey), body };
}

export function parseFaucet(body: unknown, currencies: CurrencyRegistry): FaucetRequest {
  const fields = asObject(body);
  const currency = currencyField(fields, currencies);
  return {
    currency,
    address: addressField(fields, 'address', currency, currencies),
    amount: amountField(fields, 'amount'),
  };
}

export function parseNewAddress(body: unknown, currencies: CurrencyRegistry): Currency {
  return currencyField(asObject(body), currencies);
}

export function parseFaultSettings(body: unknown): Partial<FaultSettings> {
  const fields = asObject(body);
  const patch = { fail_rate: fields.fail_rate, latency_ms: fields.latency_ms, drop_rate: fields.drop_rate };
  const problem = faultSettingsError(patch);
  if (problem) throw invalidRequest(problem);
  return patch as Partial<FaultSettings>;
}

/** The currency of a query string, or 400. */
export function parseCurrencyQuery(query: unknown, currencies: CurrencyRegistry): Currency {
  return currencyField(asObject(query ?? {}), currencies);
}

/** An escrow id from a path or body; anything that is not a UUID names no escrow. */
export function escrowIdOrNotFound(value: unknown): string {
  if (typeof value !== 'string' || !UUID.test(value)) {
    throw new WalletDaemonError('ESCROW_NOT_FOUND', `no escrow ${JSON.stringify(value)}`);
  }
  return value.toLowerCase();
}

function asObject(body: unknown): Body {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('request body must be a JSON object');
  }
  return body as Body;
}

function stringField(fields: Body, name: string, maxLength: number): string {
  const value = fields[name];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw invalidRequest(`${name} must be a non-empty string of at most ${maxLength} characters`);
  }
  return value;
}

function escrowIdField(fields: Body): string {
  return escrowIdOrNotFound(stringField(fields, 'escrow_id', MAX_ID_LENGTH));
}

function amountField(fields: Body, name: string): Decimal {
  const amount = parseAmount(fields[name]);
  if (!amount) throw invalidRequest(`${name} must be a positive decimal with at most 8 decimals`);
  return amount;
}

function currencyField(fields: Body, currencies: CurrencyRegistry): Currency {
  const currency = currencies.find(fields.currency);
  if (!currency) throw invalidRequest('currency must be one of BTC, AITBC');
  return currency;
}

function addressField(fields: Body, name: string, currency: Currency, currencies: CurrencyRegistry): string {
  const address = currencies.normalize(currency, fields[name]);
  if (!address) throw invalidRequest(`${name} is not a valid ${currency.code} address`);
  return address;
}

function timeoutField(fields: Body): number {
  const value = fields.timeout_seconds;
  if (value === undefined || value === null) return DEFAULT_TIMEOUT_SECONDS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMEOUT_SECONDS) {
    throw invalidRequest(`timeout_seconds must be an integer between 1 and ${MAX_TIMEOUT_SECONDS}`);
  }
  return value;
}
