// Owns the idempotency_keys table.
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { IdempotencyKey } from './idempotency-key.entity';

/** Which request a key belongs to: the key is unique per principal, method and path. */
export interface KeyScope {
  principalId: string;
  method: string;
  path: string;
  key: string;
}

type Stored = Pick<IdempotencyKey, 'request_hash' | 'status_code' | 'response_body'>;

/**
 * Every statement on `idempotency_keys`, each written out whole. A claim is leased
 * (`locked_until`) and fenced by its token (`claim_token`): only the attempt holding the
 * current token may record a recovery point or store the answer.
 */
@Injectable()
export class IdempotencyKeysRepository {
  /** The first claim on a key (INSERT … ON CONFLICT DO NOTHING: of two concurrent requests exactly one wins). */
  async claim(
    sql: Sql,
    scope: KeyScope,
    claim: { requestHash: string; retentionDays: number; token: string; leaseMs: number },
  ): Promise<boolean> {
    const inserted = await sql.one(
      `INSERT INTO idempotency_keys (principal_id, method, path, key, request_hash, expires_at, claim_token, locked_until)
       VALUES ($1, $2, $3, $4, $5, now() + $6::int * interval '1 day', $7, now() + $8::int * interval '1 millisecond')
       ON CONFLICT DO NOTHING RETURNING 1 AS claimed`,
      [...keyOf(scope), claim.requestHash, claim.retentionDays, claim.token, claim.leaseMs],
    );
    return inserted !== undefined;
  }

  /**
   * Takes over the same request's claim whose attempt died unanswered once its lease has
   * passed (compare-and-set on the lease, so of several retries exactly one does), with a
   * new token; returns what the first attempt had committed, or undefined when not taken.
   */
  takeOver(
    sql: Sql,
    scope: KeyScope,
    claim: { requestHash: string; token: string; leaseMs: number },
  ): Promise<Pick<IdempotencyKey, 'recovery'> | undefined> {
    return sql.one<Pick<IdempotencyKey, 'recovery'>>(
      `UPDATE idempotency_keys SET claim_token = $6, locked_until = now() + $7::int * interval '1 millisecond'
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND request_hash = $5
          AND status_code IS NULL AND (locked_until IS NULL OR locked_until <= now())
        RETURNING recovery`,
      [...keyOf(scope), claim.requestHash, claim.token, claim.leaseMs],
    );
  }

  find(sql: Sql, scope: KeyScope): Promise<Stored | undefined> {
    return sql.one<Stored>(
      `SELECT request_hash, status_code, response_body FROM idempotency_keys
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4`,
      keyOf(scope),
    );
  }

  /** Records what the request's first write committed, inside that write's transaction; false if the claim was taken over. */
  async recordRecovery(sql: Sql, scope: KeyScope, token: string, point: Record<string, string>): Promise<boolean> {
    const recorded = await sql.one(
      `UPDATE idempotency_keys SET recovery = $6::jsonb
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5 AND status_code IS NULL
        RETURNING 1 AS recorded`,
      [...keyOf(scope), token, JSON.stringify(point)],
    );
    return recorded !== undefined;
  }

  /** Stores the answer, unless a retry took the claim over meanwhile. */
  async complete(sql: Sql, scope: KeyScope, token: string, status: number, body: unknown): Promise<void> {
    await sql.rows(
      `UPDATE idempotency_keys SET status_code = $6, response_body = $7::jsonb, completed_at = now(), locked_until = NULL
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5 AND status_code IS NULL`,
      [...keyOf(scope), token, status, JSON.stringify(body ?? null)],
    );
  }

  /** No definite answer: forget a claim that committed nothing; end the lease of one that did. */
  async release(sql: Sql, scope: KeyScope, token: string): Promise<void> {
    await sql.rows(
      `WITH forgotten AS (
         DELETE FROM idempotency_keys
          WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5
            AND status_code IS NULL AND recovery IS NULL
         RETURNING 1)
       UPDATE idempotency_keys SET locked_until = now()
        WHERE principal_id = $1 AND method = $2 AND path = $3 AND key = $4 AND claim_token = $5
          AND status_code IS NULL AND recovery IS NOT NULL`,
      [...keyOf(scope), token],
    );
  }

  /** Forgets keys past their retention; returns how many. */
  async purgeExpired(sql: Sql): Promise<number> {
    return (await sql.rows(`DELETE FROM idempotency_keys WHERE expires_at < now() RETURNING 1`)).length;
  }
}

function keyOf(scope: KeyScope): [string, string, string, string] {
  return [scope.principalId, scope.method, scope.path, scope.key];
}
