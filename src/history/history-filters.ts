import type { Principal } from '../auth/api-keys';
import { validationError } from '../common/errors';
import { PAYMENT_STATUSES, PaymentStatus } from '../payments/job-payment.entity';
import { EVENT_TYPES, EventType } from './history-rules';

/**
 * Parsing and scoping of the history's query parameters (GET /v1/payments, summary,
 * export). Everything here is pure: a bad parameter is a 400 `VALIDATION_FAILED`
 * naming it, before any SQL runs.
 */

/** The raw query of the list, summary and export (strings as they arrive). */
export interface RawFilters {
  status?: string;
  currency?: string;
  job_id?: string;
  client_id?: string;
  miner_id?: string;
  created_from?: string;
  created_to?: string;
  settled_from?: string;
  settled_to?: string;
  amount_min?: string;
  amount_max?: string;
}

/** A time bound as PostgreSQL reads it (ISO-8601 with an explicit zone) and whether it falls on a UTC midnight. */
export interface TimeBound {
  text: string;
  midnight: boolean;
}

/** Validated filters, already narrowed to what the caller may see. */
export interface PaymentFilters {
  /** undefined: any status; an empty list: nothing can match. */
  statuses?: PaymentStatus[];
  currency?: string;
  jobId?: string;
  clientId?: string;
  minerId?: string;
  createdFrom?: TimeBound;
  createdTo?: TimeBound;
  settledFrom?: TimeBound;
  settledTo?: TimeBound;
  amountMin?: string;
  amountMax?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PRINCIPAL_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,11})(\.[0-9]{1,8})?$/;
// A date, or a date and time with an explicit zone: a bound never depends on the server's time zone.
const ISO = /^(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}(?::\d{2}(?:\.(\d{1,6}))?)?)(Z|[+-]\d{2}:\d{2}))?$/;

type FieldErrors = Record<string, string[]>;

function fail(fields: FieldErrors): never {
  throw validationError('Invalid filter', { fields });
}

/** A comma list: trimmed, no empty items, no repeats. */
function commaList(value: string): string[] {
  return [...new Set(value.split(',').map((s) => s.trim()))];
}

export function parseTimeBound(value: string): TimeBound | undefined {
  const match = ISO.exec(value);
  if (!match) return undefined;
  const text = match[2] === undefined ? `${match[1]}T00:00:00Z` : value;
  const ms = Date.parse(text);
  // Date.parse accepts 2026-02-31; a round trip of the date part rejects it.
  if (Number.isNaN(ms) || (match[2] === undefined && new Date(ms).toISOString().slice(0, 10) !== match[1]))
    return undefined;
  const subMs = (match[3] ?? '').slice(3);
  return { text, midnight: ms % 86_400_000 === 0 && !/[1-9]/.test(subMs) };
}

/**
 * Validates the filters and applies the caller's scope: a client sees only its own
 * payments; a miner (summary only) only payments released to it; an admin everything,
 * and only an admin may filter by `client_id` or `miner_id`.
 */
export function parseFilters(raw: RawFilters, principal: Principal, currencies: ReadonlySet<string>): PaymentFilters {
  const errors: FieldErrors = {};
  const out: PaymentFilters = {};

  if (raw.status !== undefined) {
    const statuses = commaList(raw.status);
    const unknown = statuses.filter((s) => !(PAYMENT_STATUSES as readonly string[]).includes(s));
    if (unknown.length)
      errors.status = [`unknown status ${unknown.join(', ')}; expected a comma list of ${PAYMENT_STATUSES.join(', ')}`];
    else out.statuses = statuses as PaymentStatus[];
  }
  if (raw.currency !== undefined) {
    if (!currencies.has(raw.currency)) errors.currency = [`unknown currency; one of ${[...currencies].join(', ')}`];
    else out.currency = raw.currency;
  }
  if (raw.job_id !== undefined) {
    if (!UUID.test(raw.job_id)) errors.job_id = ['must be a job id (UUID)'];
    else out.jobId = raw.job_id;
  }
  for (const field of ['client_id', 'miner_id'] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (principal.role !== 'admin') errors[field] = [`only admins may filter by ${field}`];
    else if (!PRINCIPAL_ID.test(value)) errors[field] = ['must be a principal id'];
    else out[field === 'client_id' ? 'clientId' : 'minerId'] = value;
  }
  const bounds = [
    ['created_from', 'createdFrom'],
    ['created_to', 'createdTo'],
    ['settled_from', 'settledFrom'],
    ['settled_to', 'settledTo'],
  ] as const;
  for (const [field, key] of bounds) {
    const value = raw[field];
    if (value === undefined) continue;
    const bound = parseTimeBound(value);
    if (!bound)
      errors[field] = ['must be an ISO-8601 date (2026-11-01) or date-time with a zone (2026-11-01T12:00:00Z)'];
    else out[key] = bound;
  }
  for (const [field, key] of [
    ['amount_min', 'amountMin'],
    ['amount_max', 'amountMax'],
  ] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (!DECIMAL.test(value)) errors[field] = ['must be a plain decimal string such as "0.001" (at most 8 decimals)'];
    else out[key] = value;
  }
  if (Object.keys(errors).length) fail(errors);

  // Scope: the caller's own rows only, whatever the filters say.
  if (principal.role === 'client') out.clientId = principal.id;
  if (principal.role === 'miner') {
    out.minerId = principal.id;
    out.statuses = (out.statuses ?? ['released']).filter((s) => s === 'released');
  }
  return out;
}

export const GROUP_KEYS = ['currency', 'status', 'day', 'month', 'client_id', 'miner_id'] as const;
export type GroupKey = (typeof GROUP_KEYS)[number];

/** `group_by`: a comma list; `currency` is always included; day xor month; client_id xor miner_id, admins only. */
export function parseGroupBy(raw: string | undefined, principal: Principal): Set<GroupKey> {
  const keys = raw === undefined ? [] : commaList(raw);
  const problems: string[] = [];
  const unknown = keys.filter((k) => !(GROUP_KEYS as readonly string[]).includes(k));
  if (unknown.length)
    problems.push(`unknown key ${unknown.join(', ')}; expected a comma list of ${GROUP_KEYS.join(', ')}`);
  const set = new Set<GroupKey>(['currency', ...(keys.filter((k) => !unknown.includes(k)) as GroupKey[])]);
  if (set.has('day') && set.has('month')) problems.push('day and month exclude each other');
  if (set.has('client_id') && set.has('miner_id')) problems.push('client_id and miner_id exclude each other');
  if ((set.has('client_id') || set.has('miner_id')) && principal.role !== 'admin')
    problems.push('only admins may group by client_id or miner_id');
  if (problems.length) fail({ group_by: problems });
  return set;
}

export function parseEventTypes(raw: string | undefined): EventType[] | undefined {
  if (raw === undefined) return undefined;
  const types = commaList(raw);
  const unknown = types.filter((t) => !(EVENT_TYPES as readonly string[]).includes(t));
  if (unknown.length)
    fail({ types: [`unknown type ${unknown.join(', ')}; expected a comma list of ${EVENT_TYPES.join(', ')}`] });
  return types as EventType[];
}

// ---------------------------------------------------------------- cursors

/**
 * Opaque cursors: base64url of a JSON pair. List and payout cursors carry the last row's
 * exact timestamp (microseconds, as PostgreSQL printed it) and id; feed cursors the last
 * event's transaction id and event id.
 */
const encode = (pair: [string, string]) => Buffer.from(JSON.stringify(pair), 'utf8').toString('base64url');

function decode(cursor: string, field: string, valid: (a: string, b: string) => boolean): [string, string] {
  let pair: unknown;
  try {
    pair = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    pair = undefined;
  }
  if (
    !Array.isArray(pair) ||
    pair.length !== 2 ||
    typeof pair[0] !== 'string' ||
    typeof pair[1] !== 'string' ||
    !valid(pair[0], pair[1])
  )
    fail({ [field]: ['not a cursor from a previous page'] });
  return pair as [string, string];
}

/** `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as the repository formats it. */
const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export interface KeysetCursor {
  at: string;
  id: string;
}
export const encodeKeyset = (c: KeysetCursor) => encode([c.at, c.id]);
export function decodeKeyset(cursor: string): KeysetCursor {
  const [at, id] = decode(cursor, 'cursor', (a, b) => CURSOR_TIME.test(a) && UUID.test(b));
  return { at, id };
}

export interface FeedCursor {
  tx: string;
  eventId: string;
}
const INT64 = /^(0|[1-9][0-9]{0,18})$/;
const isInt64 = (s: string) => INT64.test(s) && BigInt(s) <= 9_223_372_036_854_775_807n;
export const encodeFeed = (c: FeedCursor) => encode([c.tx, c.eventId]);
export function decodeFeed(cursor: string): FeedCursor {
  const [tx, eventId] = decode(cursor, 'after', (a, b) => isInt64(a) && isInt64(b));
  return { tx, eventId };
}

// ---------------------------------------------------------------- summary plan

/** Which rollup scope answers a summary: all payments, per client, or per miner. */
export interface RollupPlan {
  scope: 'a' | 'c' | 'm';
  /** One client's or miner's rows; undefined: every id of the scope. */
  scopeId?: string;
  fromDay?: string;
  toDay?: string;
}

/**
 * The rollup answers when every filter is one of its dimensions (status, currency, one
 * client or one miner, created bounds on UTC midnights); anything else (job_id, settled
 * or amount bounds, a created bound inside a day, client and miner together) is summed
 * from the payments themselves. Both give the same exact answer.
 */
export function rollupPlan(filters: PaymentFilters, groupBy: ReadonlySet<GroupKey>): RollupPlan | undefined {
  if (filters.jobId || filters.settledFrom || filters.settledTo || filters.amountMin || filters.amountMax)
    return undefined;
  if ((filters.createdFrom && !filters.createdFrom.midnight) || (filters.createdTo && !filters.createdTo.midnight))
    return undefined;
  const byClient = filters.clientId !== undefined || groupBy.has('client_id');
  const byMiner = filters.minerId !== undefined || groupBy.has('miner_id');
  if (byClient && byMiner) return undefined;
  // The UTC day of each bound (a bound with an offset may still fall on a UTC midnight).
  const utcDay = (bound?: TimeBound) => (bound ? new Date(bound.text).toISOString().slice(0, 10) : undefined);
  const days = { fromDay: utcDay(filters.createdFrom), toDay: utcDay(filters.createdTo) };
  if (byMiner) return { scope: 'm', scopeId: filters.minerId, ...days };
  if (byClient) return { scope: 'c', scopeId: filters.clientId, ...days };
  return { scope: 'a', scopeId: '', ...days };
}
