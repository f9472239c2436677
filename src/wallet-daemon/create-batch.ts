import Decimal from 'decimal.js';
import { uuidv7 } from 'uuidv7';
import { formatAmount } from './amounts';
import { BatchItemResult, BatchRun, PendingItem } from './batch';
import { StoredResponse } from './idempotency';
import {
  Account,
  accountKey,
  AccountRef,
  assertSpendable,
  Db,
  discardNewEscrows,
  EscrowRow,
  findAccounts,
  insertEscrows,
  insufficientFunds,
  lockAccounts,
  newTransactionHash,
  postTransfers,
} from './ledger';
import { BatchItem, CREATE_ROUTE, CreateEscrowRequest, parseCreateEscrow } from './requests';
import type { WalletService } from './wallet-service';

/** One item on its way through the steps; dropped from the batch as soon as it has its answer. */
interface Creating extends PendingItem {
  request: CreateEscrowRequest;
  payer?: Account;
  hold?: Account;
  escrow?: EscrowRow;
}

/**
 * Create-batch with one statement per step for the whole batch (inside the caller's
 * transaction), answering every item exactly as its single create would, checks in the
 * same order: 400 for a bad field (before its key is claimed), replay or
 * IDEMPOTENCY_KEY_REUSED for a used key, 400 for a payer that is an escrow address, 402
 * when the payer cannot pay (items of one payer take its balance in request order, each
 * after the ones before it, as single creates one after another would). A failed
 * item's key is given back and nothing is held for it. Keys and payments must be
 * distinct within the batch (the caller runs batches with repeats one item at a time).
 */
export async function createDistinctBatch(
  db: Db,
  wallet: WalletService,
  items: BatchItem[],
): Promise<BatchItemResult[]> {
  const run = new BatchRun<Creating>(db, items);

  // 1. Fields, before any key is claimed; 2. keys: claimed, or answered from what they already stored.
  let creating = await run.claimKeys(
    run.parse((item, index) => ({
      index,
      key: item.idempotencyKey,
      route: CREATE_ROUTE,
      request: parseCreateEscrow(item.body, wallet.currencies),
    })),
  );
  if (creating.length === 0) return run.finish([]);

  // 3. Payers, which must be wallet addresses; one without an account has nothing to pay with.
  const payers = await findAccounts(db, creating.map(payerOf));
  creating = run.keep(creating, (c) => {
    const payer = payers.get(accountKey(payerOf(c)));
    if (!payer) throw insufficientFunds(payerOf(c), c.request.amount);
    c.payer = assertSpendable(payer, 'payer');
  });

  // 4. Whoever is short on the balances as read (unlocked) is refused before any row is written.
  creating = fundInRequestOrder(run, creating, new Map([...payers.values()].map((a) => [a.accountId, a.balance])));
  if (creating.length === 0) return run.finish([]);

  // 5. Fresh HD addresses, their hold accounts and the escrow rows: written before the
  //    payers are locked, so a payer's row, which its concurrent creates wait on, is
  //    locked as late as it can be.
  const holds = await wallet.newHoldAccounts(
    db,
    creating.map((c) => c.request.currency),
  );
  const escrows = await insertEscrows(
    db,
    creating.map((c, i) => {
      const escrowId = uuidv7();
      c.hold = holds[i];
      return {
        escrowId,
        paymentId: c.request.paymentId,
        currency: c.request.currency.code,
        address: holds[i].address,
        amount: c.request.amount,
        payer: (c.payer as Account).address,
        timeoutSeconds: c.request.timeoutSeconds,
        createTransactionHash: newTransactionHash({ kind: 'create', escrowId, amount: c.request.amount.toString() }),
      };
    }),
  );
  creating.forEach((c, i) => (c.escrow = escrows[i]));
  // Every answer is known now; stored before the payers are locked (see `storeAnswers`).
  await run.storeAnswers(creating.map((c) => ({ item: c, response: createdAnswer(c.escrow as EscrowRow) })));

  // 6. The payers locked (in id order, as every batch locks accounts) and the funds decided
  //    again on what they hold now: a concurrent debit may have left less than step 4 saw.
  //    Whoever is short now loses the rows step 5 wrote for it.
  const locked = await lockAccounts(db, [...new Set(creating.map((c) => (c.payer as Account).accountId))]);
  const funded = fundInRequestOrder(run, creating, locked);
  const short = creating.filter((c) => !new Set(funded).has(c));
  await discardNewEscrows(
    db,
    short.map((c) => (c.escrow as EscrowRow).escrow_id),
    short.map((c) => (c.hold as Account).accountId),
  );

  // 7. The money: each amount from its payer into its hold.
  await postTransfers(
    db,
    funded.map((c) => {
      const escrow = c.escrow as EscrowRow;
      const amount = c.request.amount;
      return {
        transfer: {
          transactionHash: escrow.create_transaction_hash,
          kind: 'create',
          currency: escrow.currency,
          amount,
          escrowId: escrow.escrow_id,
        },
        legs: [
          { account: c.payer as Account, amount: amount.neg() },
          { account: c.hold as Account, amount },
        ],
      };
    }),
  );

  // 8. Failed items' keys given back (their answers with them); the answers in request order.
  return run.finish(funded.map((c) => ({ item: c, response: createdAnswer(c.escrow as EscrowRow) })));
}

function payerOf(c: Creating): AccountRef {
  return { currency: c.request.currency.code, address: c.request.payer };
}

/**
 * The items their payers can pay, each taking its amount from what the ones before it
 * left (request order); the others are refused with INSUFFICIENT_FUNDS.
 */
function fundInRequestOrder(run: BatchRun<Creating>, creating: Creating[], balances: Map<string, string>): Creating[] {
  const left = new Map([...balances].map(([id, balance]) => [id, new Decimal(balance)]));
  return run.keep(creating, (c) => {
    const payer = c.payer as Account;
    const balance = left.get(payer.accountId) ?? new Decimal(0);
    if (balance.lt(c.request.amount)) throw insufficientFunds(payer, c.request.amount);
    left.set(payer.accountId, balance.minus(c.request.amount));
  });
}

/** The answer to a create, single or batched (stored for replays). */
export function createdAnswer(escrow: EscrowRow): StoredResponse {
  return {
    statusCode: 201,
    body: {
      escrow_id: escrow.escrow_id,
      payment_id: escrow.payment_id,
      address: escrow.address,
      transaction_hash: escrow.create_transaction_hash,
      expires_at: escrow.expires_at.toISOString(),
      amount: formatAmount(escrow.amount),
      currency: escrow.currency,
      state: escrow.state,
    },
  };
}
