import { Inject, Injectable } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { Transactions } from '../database/transactions';
import { canonicalReceiptBytes } from '../receipts/receipt-signer';

/** Keys are kept at least this long (at least 7 days on money-moving routes; used for all). */
export const IDEMPOTENCY_RETENTION_DAYS = 7;

export interface Scope {
  principalId: string;
  method: string;
  path: string;
  key: string;
}

export type Claim =
  | { kind: 'claimed'; token: string; resumeFrom: Record<string, string> | null }
  | { kind: 'replay'; status: number; body: unknown }
  | { kind: 'in_progress' }
  | { kind: 'reused' };

/**
 * Stores the first answer to a POST per (principal, method, path, key). The claim is a
 * single INSERT … ON CONFLICT DO NOTHING, so of two concurrent requests exactly one runs.
 * A claim is leased (`IDEMPOTENCY_LEASE_MS`): when its attempt died without an answer, a
 * retry takes it over once the lease has passed, with a new fencing token, and resumes
 * from the recovery point the first attempt committed (see `RecoveryPoints`).
 */
@Injectable()
export class IdempotencyService {
  constructor(
    private readonly tx: Transactions,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: MetricsService,
  ) {}

  /** A stable hash of the request body (canonical JSON, so key order does not matter). */
  fingerprint(body: unknown): string {
    const bytes = body === undefined || body === null ? Buffer.alloc(0) : canonicalReceiptBytes({ body });
    return createHash('sha256').update(bytes).digest('hex');
  }

  async claim(scope: Scope, requestHash: string): Promise<Claim> {
    const key = [scope.principalId, scope.method, scope.path, scope.key];
    const token = randomUUID();
    const inserted = await this.tx.sql.one(
      `INSERT INTO idempotency_keys (principal_id, method, path, key, request_hash, expires_at, claim_token, locked_until)
       VALUES ($1, $2, $3, $4, $5, now() + $6::int * interval '1 day', $7, now() + $8::int * interval '1 millisecond')
       ON CONFLICT DO NOTHING RETURNING 1 AS claimed`,
      [...key, requestHash, IDEMPOTENCY_RETENTION_DAYS, token, this.config.idempotencyLeaseMs],
    );
    if (inserted) return { kind: 'claimed', token, resumeFrom: null };
    // The same request, unanswered, its lease passed: its attempt died. Take it over (compare-and-set
    // on the lease, so of several retries exactly one does), with what it had committed.
    const taken = await this.tx.sql.one<{ recovery: Record<string, string> | null }>(
      `UPDATE idempotency_keys SET claim_token = $6, locked_until = now() + $7::int * interval '1 millisecond'
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND request_hash = $5
          AND status_code IS NULL AND (locked_until IS NULL OR locked_until <= now())
        RETURNING recovery`,
      [...key, requestHash, token, this.config.idempotencyLeaseMs],
    );
    if (taken) {
      this.metrics.idempotencyTakeovers.inc({ resumed: taken.recovery ? 'true' : 'false' });
      return { kind: 'claimed', token, resumeFrom: taken.recovery };
    }
    const existing = await this.tx.sql.one<{
      request_hash: string;
      status_code: number | null;
      response_body: unknown;
    }>(
      `SELECT request_hash, status_code, response_body FROM idempotency_keys
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4`,
      key,
    );
    // Deleted between our INSERT and SELECT (the first attempt failed): treat as in flight; the client retries.
    if (!existing) return { kind: 'in_progress' };
    if (existing.request_hash !== requestHash) return { kind: 'reused' };
    if (existing.status_code === null) return { kind: 'in_progress' };
    return { kind: 'replay', status: existing.status_code, body: existing.response_body };
  }

  /** Stores the answer, unless a retry took the claim over meanwhile (then its answer counts). */
  async complete(scope: Scope, token: string, status: number, body: unknown): Promise<void> {
    await this.tx.sql.rows(
      `UPDATE idempotency_keys SET status_code = $6, response_body = $7::jsonb, completed_at = now(), locked_until = NULL
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5 AND status_code IS NULL`,
      [scope.principalId, scope.method, scope.path, scope.key, token, status, JSON.stringify(body ?? null)],
    );
  }

  /**
   * The attempt ended without a definite answer (5xx). Nothing committed: forget the key,
   * so a retry runs afresh. Something committed: keep it and end the lease now, so a
   * retry resumes from the recovery point at once instead of doing the work again.
   */
  async release(scope: Scope, token: string): Promise<void> {
    await this.tx.sql.rows(
      `WITH forgotten AS (
         DELETE FROM idempotency_keys
          WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5
            AND status_code IS NULL AND recovery IS NULL
         RETURNING 1)
       UPDATE idempotency_keys SET locked_until = now()
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5
          AND status_code IS NULL AND recovery IS NOT NULL`,
      [scope.principalId, scope.method, scope.path, scope.key, token],
    );
  }

  /** Sweep: forget keys past their retention. */
  async purgeExpired(): Promise<number> {
    const rows = await this.tx.sql.rows(`DELETE FROM idempotency_keys WHERE expires_at < now() RETURNING 1`);
    return rows.length;
  }
}
