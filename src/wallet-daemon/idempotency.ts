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

/*
 * The same for many keys at once (the batch routes): one statement per step. Keys must be
 * distinct within one call.
 */

export interface KeyRequest {
  key: string;
  route: string;
  fingerprint: string;
  /**
   * The answer the request will have if its work succeeds, when that is known before the
   * work: stored with the claim, so no later update is needed. Work that then fails must
   * give its key back (`releaseIdempotencyKeys`), as any failed claimed key is.
   */
  answer?: StoredResponse;
}

/**
 * Claims every key it can; answers, per key, `claimed` or the stored answer to replay.
 * A key bound to a different request is IDEMPOTENCY_KEY_REUSED, as for a single claim.
 */
export async function claimIdempotencyKeys(
  db: Db,
  requests: KeyRequest[],
): Promise<Map<string, KeyClaim | WalletDaemonError>> {
  // Key order, so two batches sharing keys wait on each other instead of deadlocking.
  requests = [...requests].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const { rows: inserted } = await db.query<{ idempotency_key: string }>(
    `INSERT INTO wallet_daemon.idempotency_keys (idempotency_key, route, fingerprint, status_code, response_body)
     SELECT key, route, fingerprint, coalesce(status_code, 0), coalesce(body::json, 'null'::json)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[]) AS u(key, route, fingerprint, status_code, body)
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING idempotency_key`,
    [
      requests.map((r) => r.key),
      requests.map((r) => r.route),
      requests.map((r) => r.fingerprint),
      requests.map((r) => r.answer?.statusCode ?? null),
      requests.map((r) => (r.answer ? JSON.stringify(r.answer.body) : null)),
    ],
  );
  const claims = new Map<string, KeyClaim | WalletDaemonError>(
    inserted.map((row) => [row.idempotency_key, { kind: 'claimed' }]),
  );
  const taken = requests.filter((r) => !claims.has(r.key));
  if (taken.length === 0) return claims;

  const { rows } = await db.query<{
    idempotency_key: string;
    route: string;
    fingerprint: string;
    status_code: number;
    response_body: unknown;
  }>(
    `SELECT idempotency_key, route, fingerprint, status_code, response_body FROM wallet_daemon.idempotency_keys
     WHERE idempotency_key = ANY($1::text[])`,
    [taken.map((r) => r.key)],
  );
  const stored = new Map(rows.map((row) => [row.idempotency_key, row]));
  for (const request of taken) {
    const row = stored.get(request.key);
    if (!row) throw new Error(`idempotency key ${request.key} conflicted but is not readable`);
    claims.set(
      request.key,
      row.fingerprint === request.fingerprint
        ? { kind: 'replay', response: { statusCode: row.status_code, body: row.response_body } }
        : new WalletDaemonError(
            'IDEMPOTENCY_KEY_REUSED',
            `Idempotency-Key was already used for a different request (${row.route})`,
          ),
    );
  }
  return claims;
}

/** Records the answers of claimed keys, in the same transaction as the work. */
export async function storeIdempotentResponses(
  db: Db,
  answers: Array<{ key: string; response: StoredResponse }>,
): Promise<void> {
  if (answers.length === 0) return;
  await db.query(
    `UPDATE wallet_daemon.idempotency_keys k SET status_code = a.status_code, response_body = a.body::json
     FROM unnest($1::text[], $2::integer[], $3::text[]) AS a(key, status_code, body)
     WHERE k.idempotency_key = a.key`,
    [
      answers.map((a) => a.key),
      answers.map((a) => a.response.statusCode),
      answers.map((a) => JSON.stringify(a.response.body)),
    ],
  );
}

/** Gives back keys claimed by this transaction whose work failed: errors are not stored. */
export async function releaseIdempotencyKeys(db: Db, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await db.query(`DELETE FROM wallet_daemon.idempotency_keys WHERE idempotency_key = ANY($1::text[])`, [keys]);
}
