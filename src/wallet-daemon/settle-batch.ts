import Decimal from 'decimal.js';
import { accountOf, BatchItemResult, BatchRun, PendingItem } from './batch';
import { escrowNotFound, WalletDaemonError } from './errors';
import { StoredResponse } from './idempotency';
import { formatAmount, settledAmounts } from './amounts';
import {
  AccountRef,
  assertSpendable,
  claimSettlements,
  Db,
  ensureAddressAccounts,
  EscrowRow,
  findEscrows,
  newTransactionHash,
  postTransfers,
} from './ledger';
import { BatchSettlement, parseBatchSettlement, SettleEscrowRequest } from './requests';
import type { WalletService } from './wallet-service';

/** One item on its way through the steps; dropped from the batch as soon as it has its answer. */
interface Settling extends PendingItem {
  outcome: 'released' | 'refunded';
  request: SettleEscrowRequest;
  escrow?: EscrowRow;
  recipientField?: 'payee' | 'refund_address';
  recipient?: AccountRef;
  /** A partial release: what the payee gets and where the rest goes. */
  releasedAmount?: Decimal | null;
  refund?: AccountRef | null;
  transactionHash?: string;
  /** Why the request's checks refused it (answered after its key is claimed). */
  refusal?: Error;
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
export async function settleDistinctBatch(
  db: Db,
  wallet: WalletService,
  items: BatchSettlement[],
): Promise<BatchItemResult[]> {
  const run = new BatchRun<Settling>(db, items);

  // 1. Fields, before any key is claimed.
  const parsed = run.parse((item, index) => ({
    index,
    key: item.idempotencyKey,
    ...parseBatchSettlement(items[index]),
  }));
  if (parsed.length === 0) return run.finish([]);

  // 2. The escrows and the request's checks against them, judged now and answered after
  //    the keys (a replay answers first); what a settlement that passes will answer is
  //    known from here on, and is stored with its key.
  const escrows = await findEscrows(
    db,
    parsed.map((s) => s.request.escrowId),
  );
  for (const s of parsed) {
    try {
      const escrow = escrows.get(s.request.escrowId);
      if (!escrow) throw escrowNotFound(s.request.escrowId);
      const checked = wallet.checkSettlement(escrow, s.outcome, s.request);
      const { currency, recipientField, recipientAddress, releasedAmount, refundAddress } = checked;
      Object.assign(s, {
        escrow,
        recipientField,
        recipient: { currency: currency.code, address: recipientAddress },
        releasedAmount,
        refund: refundAddress === null ? null : { currency: currency.code, address: refundAddress },
        transactionHash: newTransactionHash({ kind: s.outcome, escrowId: escrow.escrow_id, to: recipientAddress }),
      });
    } catch (error) {
      s.refusal = error instanceof Error ? error : new Error(String(error));
    }
  }

  // 3. Keys: claimed (with the answer of a settlement that passes), or answered from what they already stored.
  let settling = await run.claimKeys(parsed, (s) =>
    s.refusal === undefined ? settledAnswer(expectedRow(s), s.recipientField as 'payee' | 'refund_address') : undefined,
  );
  settling = run.keep(settling, (s) => {
    if (s.refusal !== undefined) throw s.refusal;
  });

  // 4. Recipient accounts (created on first use), which must be wallet addresses; the
  //    holds the money leaves from are read in the same lookup.
  const accounts = await ensureAddressAccounts(
    db,
    settling.flatMap((s) => [s.recipient as AccountRef, ...(s.refund ? [s.refund] : [])]),
    settling.map((s) => holdOf(s)),
  );
  settling = run.keep(settling, (s) => {
    assertSpendable(accountOf(accounts, s.recipient as AccountRef), s.recipientField as string);
    if (s.refund) assertSpendable(accountOf(accounts, s.refund), 'refund_address');
  });

  // 5. The compare-and-set for all of them; whoever is not held any more is refused.
  const settled = new Map(
    (
      await claimSettlements(
        db,
        settling.map((s) => ({
          escrowId: s.request.escrowId,
          state: s.outcome,
          recipient: (s.recipient as AccountRef).address,
          releasedAmount: s.releasedAmount ?? null,
          refundAddress: s.refund?.address ?? null,
          transactionHash: s.transactionHash as string,
          reason: s.request.reason,
        })),
      )
    ).map((row) => [row.escrow_id, row]),
  );
  const notHeld = settling.filter((s) => !settled.has(s.request.escrowId));
  if (notHeld.length > 0) {
    const now = await findEscrows(
      db,
      notHeld.map((s) => s.request.escrowId),
    );
    for (const s of notHeld) {
      const state = now.get(s.request.escrowId)?.state ?? 'settled';
      run.refuse(s, new WalletDaemonError('ESCROW_NOT_HELD', `escrow ${s.request.escrowId} is already ${state}`));
    }
  }
  settling = settling.filter((s) => settled.has(s.request.escrowId));
  const answers = settling.map((s) => ({
    item: s,
    response: settledAnswer(
      settled.get(s.request.escrowId) as EscrowRow,
      s.recipientField as 'payee' | 'refund_address',
    ),
  }));
  // Checked against the answers stored with the keys (and stored, for a call without
  // one), before the transfers lock the recipients' accounts (see `storeAnswers`).
  await run.storeAnswers(answers);

  // 6. The money: each whole hold to its recipient, or — a partial release — split between
  // the payee and the refund address as the legs of one transfer (one transaction hash).
  await postTransfers(
    db,
    settling.map((s) => {
      const escrow = s.escrow as EscrowRow;
      const amount = new Decimal(escrow.amount);
      const paid = s.releasedAmount ?? amount;
      const rest = amount.minus(paid);
      return {
        transfer: {
          transactionHash: s.transactionHash as string,
          kind: s.outcome === 'released' ? 'release' : 'refund',
          currency: escrow.currency,
          amount,
          escrowId: escrow.escrow_id,
        },
        legs: [
          { account: accountOf(accounts, holdOf(s)), amount: amount.neg() },
          { account: accountOf(accounts, s.recipient as AccountRef), amount: paid },
          ...(s.refund && rest.gt(0) ? [{ account: accountOf(accounts, s.refund), amount: rest }] : []),
        ],
      };
    }),
  );

  // 7. Failed items' keys given back; the answers in request order.
  return run.finish(answers);
}

/**
 * The escrow row as the compare-and-set (`claimSettlements`) will leave it, for the
 * answer stored with the key before it runs; `storeAnswers` checks the real one equal.
 */
function expectedRow(s: Settling): EscrowRow {
  const escrow = s.escrow as EscrowRow;
  const recipient = (s.recipient as AccountRef).address;
  const released = s.outcome === 'released';
  return {
    ...escrow,
    state: s.outcome,
    payee: released ? recipient : null,
    refund_address: released ? (s.refund?.address ?? null) : recipient,
    released_amount: released && s.releasedAmount ? formatAmount(s.releasedAmount) : null,
    settle_transaction_hash: s.transactionHash as string,
  };
}

/** The escrow's hold account: where its money leaves from. */
function holdOf(s: Settling): AccountRef {
  const escrow = s.escrow as EscrowRow;
  return { currency: escrow.currency, address: escrow.address };
}

/** The answer to a settlement, single or batched (stored for replays). */
export function settledAnswer(settled: EscrowRow, recipientField: 'payee' | 'refund_address'): StoredResponse {
  const body: Record<string, unknown> = {
    escrow_id: settled.escrow_id,
    transaction_hash: settled.settle_transaction_hash,
    state: settled.state,
    amount: formatAmount(settled.amount),
    currency: settled.currency,
    [recipientField]: recipientField === 'payee' ? settled.payee : settled.refund_address,
  };
  // A partial release also says how the hold was split (a whole release answers as before).
  if (settled.state === 'released' && settled.refund_address !== null) {
    Object.assign(body, settledAmounts(settled), { refund_address: settled.refund_address });
  }
  return { statusCode: 200, body };
}
