import { Inject, Injectable } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { Transactions } from '../database/transactions';
import { IdempotencyKeysRepository } from './idempotency-keys.repository';
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
    private readonly keys: IdempotencyKeysRepository,
  ) {}

  /** A stable hash of the request body (canonical JSON, so key order does not matter). */
  fingerprint(body: unknown): string {
    const bytes = body === undefined || body === null ? Buffer.alloc(0) : canonicalReceiptBytes({ body });
    return createHash('sha256').update(bytes).digest('hex');
  }

  async claim(scope: Scope, requestHash: string): Promise<Claim> {
    const token = randomUUID();
    const leaseMs = this.config.idempotencyLeaseMs;
    const claimed = await this.keys.claim(this.tx.sql, scope, {
      requestHash,
      retentionDays: IDEMPOTENCY_RETENTION_DAYS,
      token,
      leaseMs,
    });
    if (claimed) return { kind: 'claimed', token, resumeFrom: null };
    // The same request, unanswered, its lease passed: its attempt died. Take it over (compare-and-set
    // on the lease, so of several retries exactly one does), with what it had committed.
    const taken = await this.keys.takeOver(this.tx.sql, scope, { requestHash, token, leaseMs });
    if (taken) {
      this.metrics.idempotencyTakeovers.inc({ resumed: taken.recovery ? 'true' : 'false' });
      return { kind: 'claimed', token, resumeFrom: taken.recovery as Record<string, string> | null };
    }
    const existing = await this.keys.find(this.tx.sql, scope);
    // Deleted between our INSERT and SELECT (the first attempt failed): treat as in flight; the client retries.
    if (!existing) return { kind: 'in_progress' };
    if (existing.request_hash !== requestHash) return { kind: 'reused' };
    if (existing.status_code === null) return { kind: 'in_progress' };
    return { kind: 'replay', status: existing.status_code, body: existing.response_body };
  }

  /** Stores the answer, unless a retry took the claim over meanwhile (then its answer counts). */
  async complete(scope: Scope, token: string, status: number, body: unknown): Promise<void> {
    await this.keys.complete(this.tx.sql, scope, token, status, body);
  }

  /**
   * The attempt ended without a definite answer (5xx). Nothing committed: forget the key,
   * so a retry runs afresh. Something committed: keep it and end the lease now, so a
   * retry resumes from the recovery point at once instead of doing the work again.
   */
  async release(scope: Scope, token: string): Promise<void> {
    await this.keys.release(this.tx.sql, scope, token);
  }

  /** Sweep: forget keys past their retention. */
  async purgeExpired(): Promise<number> {
    return this.keys.purgeExpired(this.tx.sql);
  }
}
