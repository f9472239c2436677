import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DomainError } from '../common/errors';
import { Sql, Transactions } from '../database/transactions';
import { IdempotencyKeysRepository } from './idempotency-keys.repository';
import type { Scope } from './idempotency.service';

/** What a request's first write committed: the ids a retry needs to carry it on. */
export type RecoveryPoint = Record<string, string>;

/** The claim the running request holds on its `Idempotency-Key`. */
export interface HeldClaim {
  scope: Scope;
  /** Fencing token: only the attempt holding the current token may record or answer. */
  token: string;
  /** Set when this attempt took over a claim whose first attempt had committed this much. */
  resumeFrom: RecoveryPoint | null;
}

const held = new AsyncLocalStorage<HeldClaim>();

/** Runs a request's handler with its claim in reach of the services it calls. */
export function runWithClaim<T>(claim: HeldClaim, handler: () => T): T {
  return held.run(claim, handler);
}

/**
 * Recovery points of idempotent requests (Stripe's "atomic phases"): a request's first
 * write records, in its own transaction, what it committed on the request's key. If the
 * instance dies afterwards, a retry that takes the claim over reads that point and
 * carries the request on from it instead of doing it again: never a second job, never a
 * second hold. Without an `Idempotency-Key` every method here is a no-op.
 */
@Injectable()
export class RecoveryPoints {
  constructor(
    private readonly tx: Transactions,
    private readonly keys: IdempotencyKeysRepository,
  ) {}

  /** Whether the running request holds an `Idempotency-Key` claim. */
  holdsClaim(): boolean {
    return held.getStore() !== undefined;
  }

  /** What the first attempt of this request committed, when this attempt resumes it. */
  resumeFrom(): RecoveryPoint | undefined {
    return held.getStore()?.resumeFrom ?? undefined;
  }

  /**
   * Records the recovery point inside the caller's transaction, fenced by the claim's
   * token: if a retry took the claim over meanwhile, this throws and the caller's whole
   * transaction rolls back, so two attempts can never both commit a first write.
   */
  async record(sql: Sql, point: RecoveryPoint): Promise<void> {
    const claim = held.getStore();
    if (!claim) return;
    if (!(await this.keys.recordRecovery(sql, claim.scope, claim.token, point)))
      throw new DomainError('IDEMPOTENCY_IN_PROGRESS', 'A retry with this Idempotency-Key took the request over');
  }

  /**
   * A first write that is a single statement: as it is without a key (one round trip),
   * or in a transaction with its recovery point when the request holds a claim.
   */
  async firstWrite<T>(work: (sql: Sql) => Promise<T>, point: (result: T) => RecoveryPoint | undefined): Promise<T> {
    if (!held.getStore()) return work(this.tx.sql);
    return this.tx.run(async (sql) => {
      const result = await work(sql);
      const recovery = point(result);
      if (recovery) await this.record(sql, recovery);
      return result;
    });
  }
}
