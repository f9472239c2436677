import { WalletDaemonError } from './errors';
import {
  claimIdempotencyKeys,
  releaseIdempotencyKeys,
  requestFingerprint,
  StoredResponse,
  storeIdempotentResponses,
} from './idempotency';
import { Account, accountKey, AccountRef, Db } from './ledger';
import { BatchItem } from './requests';

/** Per batch item: the status and body its single call would have answered. */
export interface BatchItemResult {
  idempotency_key: string;
  status: number;
  body: unknown;
  replayed: boolean;
}

/** One item on its way through a set-based batch's steps. */
export interface PendingItem {
  index: number;
  key: string;
  /** The single call's route: part of the key's fingerprint. */
  route: string;
}

/**
 * The bookkeeping of a set-based batch (inside the caller's transaction): each step runs
 * one statement for every item still pending, and an item leaves the batch as soon as
 * it has its answer. A failed item's key is given back, as a rolled-back single call's
 * would be; only WalletDaemonErrors become per-item answers, anything else fails the
 * whole batch.
 */
export class BatchRun<T extends PendingItem> {
  private readonly results: BatchItemResult[];
  private readonly failedKeys: string[] = [];

  constructor(
    private readonly db: Db,
    private readonly items: BatchItem[],
  ) {
    this.results = new Array<BatchItemResult>(items.length);
  }

  /** Fields, before any key is claimed: a bad item answers its single call's 400. */
  parse(parseItem: (item: BatchItem, index: number) => T): T[] {
    const parsed: T[] = [];
    this.items.forEach((item, index) => {
      try {
        parsed.push(parseItem(item, index));
      } catch (error) {
        this.answerError(index, error);
      }
    });
    return parsed;
  }

  /** Claims the keys (in key order); a key already used answers its stored answer or IDEMPOTENCY_KEY_REUSED. */
  async claimKeys(pending: T[]): Promise<T[]> {
    if (pending.length === 0) return pending;
    const claims = await claimIdempotencyKeys(
      this.db,
      pending.map(({ index, key, route }) => ({
        key,
        route,
        fingerprint: requestFingerprint(route, this.items[index].body),
      })),
    );
    return pending.filter((p) => {
      const claim = claims.get(p.key);
      if (claim instanceof WalletDaemonError) {
        this.answerError(p.index, claim);
        return false;
      }
      if (claim?.kind === 'replay') this.answer(p.index, claim.response, true);
      return claim?.kind === 'claimed';
    });
  }

  /** The claimed items `check` accepts; the others are refused with what it threw. */
  keep(pending: T[], check: (item: T) => void): T[] {
    return pending.filter((p) => {
      try {
        check(p);
        return true;
      } catch (error) {
        this.refuse(p, error);
        return false;
      }
    });
  }

  /** A claimed item's error answer; its key is given back at the end. */
  refuse(item: T, error: unknown): void {
    this.answerError(item.index, error);
    this.failedKeys.push(item.key);
  }

  /** Stores the done items' answers with the work, gives back failed items' keys, and answers all in request order. */
  async finish(done: Array<{ item: T; response: StoredResponse }>): Promise<BatchItemResult[]> {
    if (done.length > 0)
      await storeIdempotentResponses(
        this.db,
        done.map(({ item, response }) => ({ key: item.key, response })),
      );
    await releaseIdempotencyKeys(this.db, this.failedKeys);
    for (const { item, response } of done) this.answer(item.index, response);
    return this.results;
  }

  private answer(index: number, response: StoredResponse, replayed = false): void {
    this.results[index] = {
      idempotency_key: this.items[index].idempotencyKey,
      status: response.statusCode,
      body: response.body,
      replayed,
    };
  }

  private answerError(index: number, error: unknown): void {
    if (!(error instanceof WalletDaemonError)) throw error;
    this.answer(index, { statusCode: error.status, body: error.toBody() });
  }
}

/**
 * Whether every key and every `subject` (the escrow settled, the payment held) appears
 * once: the condition for the set-based path. Batches with repeats go item by item.
 */
export function isDistinctBatch(items: BatchItem[], subject: (item: BatchItem) => string): boolean {
  const keys = new Set(items.map((i) => i.idempotencyKey));
  const subjects = new Set(items.map(subject));
  return keys.size === items.length && subjects.size === items.length;
}

export function accountOf(accounts: Map<string, Account>, ref: AccountRef): Account {
  const account = accounts.get(accountKey(ref));
  if (!account) throw new Error(`account ${accountKey(ref)} is missing`);
  return account;
}
