import { WalletDaemonError } from './errors';
import {
  canonicalJson,
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
  idempotency_key?: string;
  status: number;
  body: unknown;
  replayed: boolean;
}

/** One item on its way through a set-based batch's steps. */
export interface PendingItem {
  index: number;
  /** Unset for a single call without an Idempotency-Key: it claims and stores nothing. */
  key?: string;
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
  /** The answers already written with their keys, by `claimKeys` or `storeAnswers`. */
  private readonly storedAnswers = new Map<string, StoredResponse>();

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

  /**
   * Claims the keys (in key order); a key already used answers its stored answer or
   * IDEMPOTENCY_KEY_REUSED. `answerOf` gives, where it is known before the work, the
   * answer an item will have if its work succeeds: stored with the claim instead of by a
   * later update (`storeAnswers` then checks the item's real answer against it).
   */
  async claimKeys(pending: T[], answerOf?: (item: T) => StoredResponse | undefined): Promise<T[]> {
    const keyed = pending.filter((p): p is T & { key: string } => p.key !== undefined);
    if (keyed.length === 0) return pending;
    const answers = new Map(keyed.map((p) => [p.key, answerOf?.(p)]));
    const claims = await claimIdempotencyKeys(
      this.db,
      keyed.map(({ index, key, route }) => ({
        key,
        route,
        fingerprint: requestFingerprint(route, this.items[index].body),
        answer: answers.get(key),
      })),
    );
    return pending.filter((p) => {
      if (p.key === undefined) return true;
      const claim = claims.get(p.key);
      if (claim instanceof WalletDaemonError) {
        this.answerError(p.index, claim);
        return false;
      }
      if (claim?.kind === 'replay') this.answer(p.index, claim.response, true);
      const stored = answers.get(p.key);
      if (claim?.kind === 'claimed' && stored) this.storedAnswers.set(p.key, stored);
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
    if (item.key !== undefined) this.failedKeys.push(item.key);
  }

  /**
   * Stores the answers of items whose answer is already known, ahead of the steps that
   * lock shared accounts (a payer, a miner's payout address), so those row locks — which
   * concurrent batches wait on — are held for one statement fewer. The same transaction
   * as the work, so an answer never outlives a rolled-back batch; an item refused after
   * this still has its key (and the answer with it) given back by `finish`.
   */
  async storeAnswers(done: Array<{ item: T; response: StoredResponse }>): Promise<void> {
    const answers = done.flatMap(({ item, response }) => {
      if (item.key === undefined) return [];
      const stored = this.storedAnswers.get(item.key);
      if (stored === undefined) return [{ key: item.key, response }];
      if (stored === response) return [];
      // Stored ahead (with the claim): a replay must answer exactly what this call answers.
      if (canonicalJson(stored) !== canonicalJson(response))
        throw new Error(`the answer stored with idempotency key ${item.key} is not the answer given`);
      this.storedAnswers.set(item.key, response);
      return [];
    });
    if (answers.length === 0) return;
    await storeIdempotentResponses(this.db, answers);
    for (const { key, response } of answers) this.storedAnswers.set(key, response);
  }

  /** Stores the done items' answers not stored yet, gives back failed items' keys, and answers all in request order. */
  async finish(done: Array<{ item: T; response: StoredResponse }>): Promise<BatchItemResult[]> {
    await this.storeAnswers(done);
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
 * Splits a batch into rounds in which every key and every `subject` (the escrow settled,
 * the payment held) appears once — what the set-based steps need — keeping request order
 * among items that share either: an item goes one round after the last earlier item it
 * shares a key or subject with, so it sees that item's outcome, as the single calls one
 * after another would. A batch without repeats (the normal case) is one round. Returns
 * the items' indexes, round by round.
 */
export function distinctRounds<T extends BatchItem>(items: T[], subject: (item: T) => string): number[][] {
  const rounds: number[][] = [];
  const lastRound = new Map<string, number>();
  items.forEach((item, index) => {
    const names = [
      `subject:${subject(item)}`,
      ...(item.idempotencyKey === undefined ? [] : [`key:${item.idempotencyKey}`]),
    ];
    const round = Math.max(-1, ...names.map((n) => lastRound.get(n) ?? -1)) + 1;
    (rounds[round] ??= []).push(index);
    for (const name of names) lastRound.set(name, round);
  });
  return rounds;
}

/** Runs `runRound` (a set-based batch over distinct items) round by round, in one transaction, answers in request order. */
export async function runInRounds<T extends BatchItem>(
  db: Db,
  items: T[],
  subject: (item: T) => string,
  runRound: (db: Db, round: T[]) => Promise<BatchItemResult[]>,
): Promise<BatchItemResult[]> {
  const results = new Array<BatchItemResult>(items.length);
  for (const round of distinctRounds(items, subject)) {
    const answers = await runRound(
      db,
      round.map((index) => items[index]),
    );
    round.forEach((index, i) => (results[index] = answers[i]));
  }
  return results;
}

export function accountOf(accounts: Map<string, Account>, ref: AccountRef): Account {
  const account = accounts.get(accountKey(ref));
  if (!account) throw new Error(`account ${accountKey(ref)} is missing`);
  return account;
}
