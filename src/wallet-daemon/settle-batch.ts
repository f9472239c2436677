import Decimal from 'decimal.js';
import { escrowNotFound, WalletDaemonError } from './errors';
import {
  claimIdempotencyKeys,
  releaseIdempotencyKeys,
  requestFingerprint,
  StoredResponse,
  storeIdempotentResponses,
} from './idempotency';
import { formatAmount } from './amounts';
import {
  Account,
  accountKey,
  AccountRef,
  assertSpendable,
  claimSettlements,
  Db,
  ensureAddressAccounts,
  EscrowRow,
  findAccounts,
  findEscrows,
  newTransactionHash,
  postTransfers,
} from './ledger';
import { BatchSettlement, parseBatchSettlement, SettleEscrowRequest } from './requests';
import type { WalletService } from './wallet-service';

/** One item on its way through the steps; dropped from the batch as soon as it has its answer. */
interface Settling {
  index: number;
  key: string;
  outcome: 'released' | 'refunded';
  route: string;
  request: SettleEscrowRequest;
  escrow?: EscrowRow;
  recipientField?: 'payee' | 'refund_address';
  recipient?: AccountRef;
  transactionHash?: string;
}

/**
 * Settle-batch with one statement per step for the whole batch (inside the caller's
 * transaction), answering every item exactly as its single call would, checks in the
 * same order: 400 for a bad field (before its key is claimed), replay or
 * IDEMPOTENCY_KEY_REUSED for a used key, 404 unknown escrow, 409 mismatch, 400 bad or
 * escrow recipient, 409 not held. A failed item's key is given back, as a rolled-back
 * single call's would be. Keys and escrows must be distinct within the batch (the
 * caller settles batches with repeats one item at a time).
 */
export async function settleDistinctBatch(db: Db, wallet: WalletService, items: BatchSettlement[]): Promise<BatchSettlementResult[]> {
  const results: BatchSettlementResult[] = new Array(items.length);
  const answer = (index: number, response: StoredResponse, replayed = false) => {
    results[index] = { idempotency_key: items[index].idempotencyKey, status: response.statusCode, body: response.body, replayed };
  };
  const refuse = (item: Settling | number, error: unknown) => {
    if (!(error instanceof WalletDaemonError)) throw error;
    answer(typeof item === 'number' ? item : item.index, { statusCode: error.status, body: error.toBody() });
  };

  // 1. Fields, before any key is claimed.
  let settling: Settling[] = [];
  items.forEach((item, index) => {
    try {
      const { outcome, route, request } = parseBatchSettlement(item);
      settling.push({ index, key: item.idempotencyKey, outcome, route, request });
    } catch (error) {
      refuse(index, error);
    }
  });
  if (settling.length === 0) return results;

  // 2. Keys: claimed, or answered from what they already stored.
  const claims = await claimIdempotencyKeys(
    db,
    settling.map(({ index, key, route }) => ({ key, route, fingerprint: requestFingerprint(route, items[index].body) })),
  );
  settling = settling.filter((s) => {
    const claim = claims.get(s.key);
    if (claim instanceof WalletDaemonError) {
      refuse(s, claim);
      return false;
    }
    if (claim?.kind === 'replay') answer(s.index, claim.response, true);
    return claim?.kind === 'claimed';
  });
  const failedKeys: string[] = [];
  const refuseClaimed = (s: Settling, error: unknown) => {
    refuse(s, error);
    failedKeys.push(s.key);
  };

  // 3. The escrows and the request's checks against them.
  const escrows = await findEscrows(db, settling.map((s) => s.request.escrowId));
  settling = settling.filter((s) => {
    try {
      const escrow = escrows.get(s.request.escrowId);
      if (!escrow) throw escrowNotFound(s.request.escrowId);
      const { currency, recipientField, recipientAddress } = wallet.checkSettlement(escrow, s.outcome, s.request);
      Object.assign(s, { escrow, recipientField, recipient: { currency: currency.code, address: recipientAddress } });
      return true;
    } catch (error) {
      refuseClaimed(s, error);
      return false;
    }
  });

  // 4. Recipient accounts (created on first use), which must be wallet addresses.
  const recipients = await ensureAddressAccounts(db, settling.map((s) => s.recipient as AccountRef));
  settling = settling.filter((s) => {
    try {
      assertSpendable(accountOf(recipients, s.recipient as AccountRef), s.recipientField as string);
      return true;
    } catch (error) {
      refuseClaimed(s, error);
      return false;
    }
  });

  // 5. The compare-and-set for all of them; whoever is not held any more is refused.
  for (const s of settling) {
    s.transactionHash = newTransactionHash({ kind: s.outcome, escrowId: s.request.escrowId, to: s.recipient?.address });
  }
  const settled = new Map(
    (
      await claimSettlements(
        db,
        settling.map((s) => ({
          escrowId: s.request.escrowId,
          state: s.outcome,
          recipient: (s.recipient as AccountRef).address,
          transactionHash: s.transactionHash as string,
          reason: s.request.reason,
        })),
      )
    ).map((row) => [row.escrow_id, row]),
  );
  const notHeld = settling.filter((s) => !settled.has(s.request.escrowId));
  if (notHeld.length > 0) {
    const now = await findEscrows(db, notHeld.map((s) => s.request.escrowId));
    for (const s of notHeld) {
      const state = now.get(s.request.escrowId)?.state ?? 'settled';
      refuseClaimed(s, new WalletDaemonError('ESCROW_NOT_HELD', `escrow ${s.request.escrowId} is already ${state}`));
    }
  }
  settling = settling.filter((s) => settled.has(s.request.escrowId));

  // 6. The money: each whole hold to its recipient.
  const holds = await findAccounts(db, settling.map((s) => ({ currency: (s.escrow as EscrowRow).currency, address: (s.escrow as EscrowRow).address })));
  await postTransfers(
    db,
    settling.map((s) => {
      const escrow = s.escrow as EscrowRow;
      const amount = new Decimal(escrow.amount);
      return {
        transfer: {
          transactionHash: s.transactionHash as string,
          kind: s.outcome === 'released' ? 'release' : 'refund',
          currency: escrow.currency,
          amount,
          escrowId: escrow.escrow_id,
        },
        legs: [
          { account: accountOf(holds, escrow), amount: amount.neg() },
          { account: accountOf(recipients, s.recipient as AccountRef), amount },
        ],
      };
    }),
  );

  // 7. Answers stored with the work; failed items' keys given back.
  const answers = settling.map((s) => ({ key: s.key, response: settledAnswer(settled.get(s.request.escrowId) as EscrowRow, s.recipientField as 'payee' | 'refund_address') }));
  await storeIdempotentResponses(db, answers);
  await releaseIdempotencyKeys(db, failedKeys);
  settling.forEach((s, i) => answer(s.index, answers[i].response));
  return results;
}

function accountOf(accounts: Map<string, Account>, ref: AccountRef): Account {
  const account = accounts.get(accountKey(ref));
  if (!account) throw new Error(`account ${accountKey(ref)} is missing`);
  return account;
}

/** Whether every key and every escrow appears once: the condition for settleDistinctBatch. */
export function isDistinctBatch(items: BatchSettlement[]): boolean {
  const keys = new Set(items.map((i) => i.idempotencyKey));
  const escrows = new Set(items.map((i) => String(i.body.escrow_id).toLowerCase()));
  return keys.size === items.length && escrows.size === items.length;
}

/** The answer to a settlement, single or batched (stored for replays). */
export function settledAnswer(settled: EscrowRow, recipientField: 'payee' | 'refund_address'): StoredResponse {
  return {
    statusCode: 200,
    body: {
      escrow_id: settled.escrow_id,
      transaction_hash: settled.settle_transaction_hash,
      state: settled.state,
      amount: formatAmount(settled.amount),
      currency: settled.currency,
      [recipientField]: recipientField === 'payee' ? settled.payee : settled.refund_address,
    },
  };
}

/** Per batch item: the status and body its single call would have answered. */
export interface BatchSettlementResult {
  idempotency_key: string;
  status: number;
  body: unknown;
  replayed: boolean;
}

