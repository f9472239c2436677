import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Transactions } from '../database/transactions';
import { canonicalReceiptBytes } from '../receipts/receipt-signer';

/** Keys are kept at least this long (SPEC: ≥ 7 days on money-moving routes; we use it for all). */
export const IDEMPOTENCY_RETENTION_DAYS = 7;

export interface Scope {
  principalId: string;
  method: string;
  path: string;
  key: string;
}

export type Claim =
  | { kind: 'claimed' }
  | { kind: 'replay'; status: number; body: unknown }
  | { kind: 'in_progress' }
  | { kind: 'reused' };

/**
 * Stores the first answer to a POST per (principal, method, path, key). The claim is a
 * single INSERT … ON CONFLICT DO NOTHING, so of two concurrent requests exactly one runs.
 */
@Injectable()
export class IdempotencyService {
  constructor(private readonly tx: Transactions) {}

  /** A stable hash of the request body (canonical JSON, so key order does not matter). */
  fingerprint(body: unknown): string {
    const bytes = body === undefined || body === null ? Buffer.alloc(0) : canonicalReceiptBytes({ body });
    return createHash('sha256').update(bytes).digest('hex');
  }

  async claim(scope: Scope, requestHash: string): Promise<Claim> {
    const inserted = await this.tx.sql.one(
      `INSERT INTO idempotency_keys (principal_id, method, path, key, request_hash, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + $6::int * interval '1 day')
       ON CONFLICT DO NOTHING RETURNING 1 AS claimed`,
      [scope.principalId, scope.method, scope.path, scope.key, requestHash, IDEMPOTENCY_RETENTION_DAYS],
    );
    if (inserted) return { kind: 'claimed' };
    const existing = await this.tx.sql.one<{ request_hash: string; status_code: number | null; response_body: unknown }>(
      `SELECT request_hash, status_code, response_body FROM idempotency_keys
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4`,
      [scope.principalId, scope.method, scope.path, scope.key],
    );
    // Deleted between our INSERT and SELECT (the first attempt failed): treat as in flight; the client retries.
    if (!existing) return { kind: 'in_progress' };
    if (existing.request_hash !== requestHash) return { kind: 'reused' };
    if (existing.status_code === null) return { kind: 'in_progress' };
    return { kind: 'replay', status: existing.status_code, body: existing.response_body };
  }

  async complete(scope: Scope, status: number, body: unknown): Promise<void> {
    await this.tx.sql.rows(
      `UPDATE idempotency_keys SET status_code = $5, response_body = $6::jsonb, completed_at = now()
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4`,
      [scope.principalId, scope.method, scope.path, scope.key, status, JSON.stringify(body ?? null)],
    );
  }

  /** The first attempt ended without a definite answer (5xx): let a retry run it again. */
  async release(scope: Scope): Promise<void> {
    await this.tx.sql.rows(
      `DELETE FROM idempotency_keys WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND status_code IS NULL`,
      [scope.principalId, scope.method, scope.path, scope.key],
    );
  }

  /** Sweep: forget keys past their retention. */
  async purgeExpired(): Promise<number> {
    const rows = await this.tx.sql.rows(`DELETE FROM idempotency_keys WHERE expires_at < now() RETURNING 1`);
    return rows.length;
  }
}
