import Decimal from 'decimal.js';
import { Pool } from 'pg';
import { formatAmount, settledAmounts } from './amounts';
import { Currency, CurrencyRegistry } from './currencies';
import { escrowNotFound, invalidRequest, WalletDaemonError } from './errors';
import type { AddressSupply } from './address-lookahead';
import { claimIdempotencyKey, requestFingerprint, StoredResponse, storeIdempotentResponse } from './idempotency';
import {
  Account,
  AccountRef,
  Db,
  ensureAccount,
  ensureMintAccount,
  EscrowRow,
  escrowTransfers,
  extendEscrowExpiry,
  accountKey,
  findAccount,
  findAccounts,
  insertNewAccounts,
  findEscrow,
  ledgerTotals,
  newTransactionHash,
  assertSpendable,
  postTransfer,
  withTransaction,
} from './ledger';
import { BatchItemResult, runInRounds } from './batch';
import { createDistinctBatch } from './create-batch';
import {
  BatchItem,
  BatchSettlement,
  ExtendEscrowRequest,
  FaucetRequest,
  SettleEscrowRequest,
  SettlementAction,
} from './requests';
import { settleDistinctBatch } from './settle-batch';

/** An answer to send, possibly replayed from an earlier request with the same key. */
export interface WalletResponse extends StoredResponse {
  replayed: boolean;
}

/** The wallet daemon's operations; each POST runs in one transaction with its idempotency key. */
export class WalletService {
  constructor(
    private readonly pool: Pool,
    private readonly addresses: AddressSupply,
    readonly currencies: CurrencyRegistry,
  ) {}

  /**
   * Runs `work` once per idempotency key: the key, the work and the answer commit
   * together. Errors roll everything back (key included), so a failed request
   * can be retried with the same key.
   */
  async runIdempotent(
    route: string,
    key: string | undefined,
    rawBody: unknown,
    work: (db: Db) => Promise<StoredResponse>,
  ): Promise<WalletResponse> {
    return withTransaction(this.pool, (db) => runOncePerKey(db, route, key, rawBody, work));
  }

  /**
   * A single release or refund call: the settle-batch path with a set of one, so one
   * code path settles one escrow, a batch and a sweep's batch alike. The caller parsed
   * the body already (a bad field is a 400 before any work).
   */
  async settle(
    action: SettlementAction,
    key: string | undefined,
    body: Record<string, unknown>,
  ): Promise<WalletResponse> {
    const [result] = await withTransaction(this.pool, (db) =>
      settleDistinctBatch(db, this, [{ idempotencyKey: key, action, body }]),
    );
    return { statusCode: result.status, body: result.body, replayed: result.replayed };
  }

  /**
   * A single create: the create-batch path with a set of one, so one code path holds one
   * escrow and a batch alike. The caller parsed the body already.
   */
  async create(key: string | undefined, body: Record<string, unknown>): Promise<WalletResponse> {
    const [result] = await withTransaction(this.pool, (db) =>
      createDistinctBatch(db, this, [{ idempotencyKey: key, body }]),
    );
    return { statusCode: result.status, body: result.body, replayed: result.replayed };
  }

  /**
   * Many settlements in one transaction (one commit), each exactly the single release
   * or refund call with its key: same fingerprint, same stored answer, so a retry either
   * way replays it. A failing item (not found, not held, mismatch, bad field) gets the
   * error the single call would give and the others still commit; any other error fails
   * the whole batch (nothing applied). Set-based, one statement per step for all items
   * (settle-batch.ts); a batch repeating a key or an escrow runs in rounds, each item
   * after the ones it repeats.
   */
  async settleBatch(items: BatchSettlement[]): Promise<BatchItemResult[]> {
    return withTransaction(this.pool, (db) =>
      runInRounds(
        db,
        items,
        (item) => String(item.body.escrow_id).toLowerCase(),
        (inner, round) => settleDistinctBatch(inner, this, round),
      ),
    );
  }

  /**
   * Many creates in one transaction (one commit), each exactly the single create with its
   * key, as settleBatch is for settlements: a failing item (bad field, 402) gets the single
   * call's error and holds nothing, the others commit. Set-based (create-batch.ts); a batch
   * repeating a key or a payment runs in rounds, each item after the ones it repeats.
   */
  async createBatch(items: BatchItem[]): Promise<BatchItemResult[]> {
    return withTransaction(this.pool, (db) =>
      runInRounds(
        db,
        items,
        (item) => String(item.body.payment_id),
        (inner, round) => createDistinctBatch(inner, this, round),
      ),
    );
  }

  async newAddress(db: Db, currency: Currency): Promise<StoredResponse> {
    const [address] = await this.deriveNextAddresses(db, [currency]);
    return { statusCode: 201, body: { address, currency: currency.code } };
  }

  async faucet(db: Db, request: FaucetRequest): Promise<StoredResponse> {
    const { currency, amount } = request;
    const recipient = await this.spendableAccount(db, currency, request.address, 'address');
    const mint = await ensureMintAccount(db, currency.code);
    const transactionHash = newTransactionHash({ kind: 'faucet', to: recipient.address, amount: amount.toString() });
    const balances = await postTransfer(
      db,
      { transactionHash, kind: 'faucet', currency: currency.code, amount, escrowId: null },
      [
        { account: mint, amount: amount.neg() },
        { account: recipient, amount },
      ],
    );
    return {
      statusCode: 200,
      body: {
        transaction_hash: transactionHash,
        address: recipient.address,
        currency: currency.code,
        amount: formatAmount(amount),
        balance: formatAmount(balances.get(recipient.accountId) ?? recipient.balance),
      },
    };
  }

  /**
   * What a settlement request must satisfy before any money moves, in the order the
   * single call checks it: the escrow's address and amount when given, then a valid
   * recipient address of the escrow's currency (canonical form returned). A release of
   * less than the escrow (partial release) also needs a valid `refund_address` for the rest.
   */
  checkSettlement(escrow: EscrowRow, outcome: 'released' | 'refunded', request: SettleEscrowRequest) {
    const currency = this.currencyOf(escrow);
    this.assertMatches(escrow, currency, outcome, request);
    const recipientField = outcome === 'released' ? ('payee' as const) : ('refund_address' as const);
    const recipientAddress = this.currencies.normalize(currency, request.recipient);
    if (!recipientAddress) throw invalidRequest(`${recipientField} is not a valid ${currency.code} address`);
    const whole = new Decimal(escrow.amount);
    const releasedAmount = outcome === 'released' ? (request.expectedAmount ?? whole) : null;
    let refundAddress: string | null = null;
    // Less than the whole hold only passes assertMatches with a refund_address (a partial release).
    if (releasedAmount?.lt(whole) && request.refundAddress !== undefined) {
      refundAddress = this.currencies.normalize(currency, request.refundAddress);
      if (!refundAddress) throw invalidRequest(`refund_address is not a valid ${currency.code} address`);
    }
    return { currency, recipientField, recipientAddress, releasedAmount, refundAddress };
  }

  /**
   * Moves a held escrow's expiry later (never earlier: the latest extension wins, in
   * whatever order they arrive). This daemon never settles an escrow by itself when it
   * expires — the coordinator's sweep asks for the refund — so this is its record of the
   * deadline, kept in line with the coordinator's.
   */
  async extendEscrow(db: Db, request: ExtendEscrowRequest): Promise<StoredResponse> {
    const escrow = await extendEscrowExpiry(db, request.escrowId, request.expiresAt);
    if (!escrow) throw escrowNotFound(request.escrowId);
    if (escrow.state !== 'held') {
      throw new WalletDaemonError('ESCROW_NOT_HELD', `escrow ${escrow.escrow_id} is already ${escrow.state}`);
    }
    return { statusCode: 200, body: escrowView(escrow) };
  }

  async getEscrow(escrowId: string): Promise<object> {
    return escrowView(await this.escrowOrNotFound(this.pool, escrowId));
  }

  async escrowTransfers(escrowId: string): Promise<object> {
    await this.escrowOrNotFound(this.pool, escrowId);
    const transfers = await escrowTransfers(this.pool, escrowId);
    return {
      items: transfers.map((t) => ({
        transaction_hash: t.transaction_hash,
        kind: t.kind,
        amount: formatAmount(t.amount),
        from: t.from,
        to: t.to,
        credits: t.credits.map((c) => ({ address: c.address, amount: formatAmount(c.amount) })),
        created_at: t.created_at.toISOString(),
      })),
    };
  }

  async balanceOf(currency: Currency, address: string): Promise<object> {
    const account = await findAccount(this.pool, currency.code, address);
    return { address, currency: currency.code, balance: formatAmount(account?.balance ?? 0) };
  }

  async totals(currency: Currency): Promise<object> {
    const totals = await ledgerTotals(this.pool, currency.code);
    return {
      currency: currency.code,
      minted: formatAmount(totals.minted),
      balances: formatAmount(totals.balances),
      held: formatAmount(totals.held),
    };
  }

  /**
   * A fresh HD address per entry of `currencies` (one index per address from the
   * currency's sequence, so no two escrows or address requests ever share one). An
   * address the ledger already knows is not fresh, and its index is skipped: it was used
   * outside this daemon's sequence (another daemon started from the same seed, or funds
   * sent to an address before it was handed out), and an escrow hold must never be an
   * account that already holds money.
   */
  async deriveNextAddresses(db: Db, currencies: Currency[]): Promise<string[]> {
    const addresses = await this.addresses.take(db, currencies);
    for (;;) {
      const known = await findAccounts(
        db,
        addresses.map((address, i) => ({ currency: currencies[i].code, address })),
      );
      const used = addresses.flatMap((address, i) =>
        known.has(accountKey({ currency: currencies[i].code, address })) ? [i] : [],
      );
      if (used.length === 0) return addresses;
      const again = await this.addresses.take(
        db,
        used.map((i) => currencies[i]),
      );
      used.forEach((i, k) => (addresses[i] = again[k]));
    }
  }

  /**
   * A new escrow hold account per entry of `currencies`, each at a fresh HD address (as
   * `deriveNextAddresses`, one round trip fewer): the insert itself proves an address
   * fresh, and an address the ledger already knows is skipped for the next index.
   */
  async newHoldAccounts(db: Db, currencies: Currency[]): Promise<Account[]> {
    const holds = new Array<Account>(currencies.length);
    let wanted = currencies.map((_, i) => i);
    while (wanted.length > 0) {
      const addresses = await this.addresses.take(
        db,
        wanted.map((i) => currencies[i]),
      );
      const refs = wanted.map((i, k): AccountRef => ({ currency: currencies[i].code, address: addresses[k] }));
      const inserted = await insertNewAccounts(db, 'escrow', refs);
      wanted = wanted.filter((i, k) => {
        const hold = inserted.get(accountKey(refs[k]));
        if (hold) holds[i] = hold;
        return !hold;
      });
    }
    return holds;
  }

  /**
   * The address account that pays or gets paid. Escrow holds are not spendable
   * addresses: money only leaves them by release or refund.
   */
  private async spendableAccount(db: Db, currency: Currency, address: string, field: string): Promise<Account> {
    const canonical = this.currencies.normalize(currency, address);
    if (!canonical) throw invalidRequest(`${field} is not a valid ${currency.code} address`);
    return assertSpendable(await ensureAccount(db, 'address', currency.code, canonical), field);
  }

  private async escrowOrNotFound(db: Db, escrowId: string): Promise<EscrowRow> {
    const escrow = await findEscrow(db, escrowId);
    if (!escrow) throw escrowNotFound(escrowId);
    return escrow;
  }

  private currencyOf(escrow: EscrowRow): Currency {
    const currency = this.currencies.find(escrow.currency);
    if (!currency) throw new Error(`escrow ${escrow.escrow_id} has unknown currency ${escrow.currency}`);
    return currency;
  }

  private assertMatches(
    escrow: EscrowRow,
    currency: Currency,
    outcome: 'released' | 'refunded',
    request: SettleEscrowRequest,
  ): void {
    const { expectedAddress, expectedAmount } = request;
    if (expectedAddress !== undefined && this.currencies.normalize(currency, expectedAddress) !== escrow.address) {
      throw new WalletDaemonError('ESCROW_MISMATCH', `address does not match escrow ${escrow.escrow_id}`);
    }
    // A release with a refund_address may pay less than the escrow (the rest is refunded),
    // never more; otherwise, as a refund, `amount` is a check that it moves the whole hold.
    const partial = outcome === 'released' && request.refundAddress !== undefined;
    const mismatch =
      expectedAmount !== undefined && (partial ? expectedAmount.gt(escrow.amount) : !expectedAmount.eq(escrow.amount));
    if (mismatch) {
      throw new WalletDaemonError(
        'ESCROW_MISMATCH',
        `amount ${formatAmount(expectedAmount)} does not match escrow amount ${formatAmount(escrow.amount)}`,
      );
    }
  }
}

/**
 * Runs `work` once per idempotency key inside the caller's transaction: the key, the
 * work and the answer commit together; an error rolls the key back with the work.
 */
async function runOncePerKey(
  db: Db,
  route: string,
  key: string | undefined,
  rawBody: unknown,
  work: (db: Db) => Promise<StoredResponse>,
): Promise<WalletResponse> {
  if (key !== undefined) {
    const claim = await claimIdempotencyKey(db, key, route, requestFingerprint(route, rawBody ?? null));
    if (claim.kind === 'replay') return { ...claim.response, replayed: true };
  }
  const response = await work(db);
  if (key !== undefined) await storeIdempotentResponse(db, key, response);
  return { ...response, replayed: false };
}

/** The wire view of an escrow (`GET /api/v1/escrow/:escrow_id`). */
export function escrowView(escrow: EscrowRow): object {
  return {
    escrow_id: escrow.escrow_id,
    payment_id: escrow.payment_id,
    address: escrow.address,
    amount: formatAmount(escrow.amount),
    currency: escrow.currency,
    payer: escrow.payer,
    state: escrow.state,
    transaction_hash: escrow.settle_transaction_hash,
    create_transaction_hash: escrow.create_transaction_hash,
    payee: escrow.payee,
    refund_address: escrow.refund_address,
    ...settledAmounts(escrow),
    reason: escrow.settle_reason,
    timeout_seconds: escrow.timeout_seconds,
    expires_at: escrow.expires_at.toISOString(),
    created_at: escrow.created_at.toISOString(),
    settled_at: escrow.settled_at?.toISOString() ?? null,
  };
}
