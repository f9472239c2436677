import { createHash } from 'node:crypto';
import { Db } from './ledger';
import { invalidRequest, WalletDaemonError } from './errors';

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** A status and JSON body, as answered and as stored for replays. */
export interface StoredResponse {
  statusCode: number;
  body: unknown;
}

/** Outcome of claiming a key inside the request's transaction. */
export type KeyClaim = { kind: 'claimed' } | { kind: 'replay'; response: StoredResponse };

/** The `Idempotency-Key` header value, or undefined when absent; 400 when malformed. */
export function readIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header) || header.length === 0 || header.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw invalidRequest(`Idempotency-Key must be one value of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  }
  return header;
}

/** JSON with object keys sorted at every level, so equal requests hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What a key is bound to: the route and the (normalised) request body. */
export function requestFingerprint(route: string, body: unknown): string {
  return createHash('sha256').update(route).update('\n').update(canonicalJson(body)).digest('hex');
}

/**
 * Claims `key` for this transaction. The insert takes the key's unique-index lock,
 * so a concurrent request with the same key waits here until this transaction
 * commits (then sees the stored answer) or rolls back (then claims it itself).
 * A key already used for a different request is IDEMPOTENCY_KEY_REUSED.
 */
export async function claimIdempotencyKey(db: Db, key: string, route: string, fingerprint: string): Promise<KeyClaim> {
  const inserted = await db.query(
    `INSERT INTO wallet_daemon.idempotency_keys (idempotency_key, route, fingerprint, status_code, response_body)
     VALUES ($1, $2, $3, 0, 'null'::json)
     ON CONFLICT (idempotency_key) DO NOTHING`,
    [key, route, fingerprint],
  );
  if (inserted.rowCount === 1) return { kind: 'claimed' };

  const { rows } = await db.query<{ route: string; fingerprint: string; status_code: number; response_body: unknown }>(
    `SELECT route, fingerprint, status_code, response_body FROM wallet_daemon.idempotency_keys
     WHERE idempotency_key = $1`,
    [key],
  );
  const stored = rows[0];
  if (!stored) throw new Error(`idempotency key ${key} conflicted but is not readable`);
  if (stored.fingerprint !== fingerprint) {
    throw new WalletDaemonError(
      'IDEMPOTENCY_KEY_REUSED',
      `Idempotency-Key was already used for a different request (${stored.route})`,
    );
  }
  return { kind: 'replay', response: { statusCode: stored.status_code, body: stored.response_body } };
}

/** Records the answer of a claimed key, in the same transaction as the work. */
export async function storeIdempotentResponse(db: Db, key: string, response: StoredResponse): Promise<void> {
  await db.query(
    `UPDATE wallet_daemon.idempotency_keys SET status_code = $2, response_body = $3::json
     WHERE idempotency_key = $1`,
    [key, response.statusCode, JSON.stringify(response.body)],
  );
}

/** How long stored answers are kept; the coordinator retries for minutes, not weeks. */
export const IDEMPOTENCY_RETENTION_DAYS = 30;

/** Forgets keys older than the retention period; returns how many were deleted. */
export async function pruneIdempotencyKeys(db: Db, retentionDays = IDEMPOTENCY_RETENTION_DAYS): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM wallet_daemon.idempotency_keys WHERE created_at < now() - $1::integer * interval '1 day'`,
    [retentionDays],
  );
  return rowCount ?? 0;
}
