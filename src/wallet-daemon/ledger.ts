import { createHash, randomBytes } from 'node:crypto';
import Decimal from 'decimal.js';
import { Pool, PoolClient } from 'pg';
import { formatAmount } from './amounts';
import { CurrencyCode } from './currencies';
import { invalidRequest, WalletDaemonError } from './errors';

/** Anything that runs a query: a pool or a client inside a transaction. */
export type Db = Pick<PoolClient, 'query'>;

export type AccountKind = 'address' | 'escrow' | 'mint';
export type TransferKind = 'create' | 'release' | 'refund' | 'faucet';
export type EscrowState = 'held' | 'released' | 'refunded';

export interface Account {
  accountId: string;
  kind: AccountKind;
  currency: string;
  address: string;
  /** NUMERIC as pg returns it: an exact decimal string. */
  balance: string;
}

export interface EscrowRow {
  escrow_id: string;
  payment_id: string;
  currency: string;
  address: string;
  amount: string;
  payer: string;
  state: EscrowState;
  payee: string | null;
  refund_address: string | null;
  /** On a release: what the payee got (NULL on releases older than partial release: the whole amount). */
  released_amount: string | null;
  settle_reason: string | null;
  timeout_seconds: number;
  expires_at: Date;
  create_transaction_hash: string;
  settle_transaction_hash: string | null;
  created_at: Date;
  settled_at: Date | null;
}

/** One side of a transfer: a signed amount on one account. */
export interface Leg {
  account: Account;
  amount: Decimal;
}

export interface TransferInput {
  transactionHash: string;
  kind: TransferKind;
  currency: string;
  amount: Decimal;
  escrowId: string | null;
}

/** Postgres errors worth retrying the whole transaction for. */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);
const MAX_TRANSACTION_ATTEMPTS = 3;

/**
 * Runs `work` in one transaction; rolls back on any error. Deadlocks and
 * serialization failures are retried, which is safe because `work` only touches
 * the database.
 */
export async function withTransaction<T>(pool: Pool, work: (db: PoolClient) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      const code = (error as { code?: unknown } | undefined)?.code;
      if (attempt >= MAX_TRANSACTION_ATTEMPTS || typeof code !== 'string' || !RETRYABLE_SQLSTATES.has(code))
        throw error;
    } finally {
      client.release();
    }
  }
}

/** A 64-hex transaction hash: sha256 over fresh randomness and what the transfer does. */
export function newTransactionHash(content: object): string {
  return createHash('sha256').update(randomBytes(32)).update(JSON.stringify(content)).digest('hex');
}

/**
 * `count` unused HD address indexes of the currency, each handed out once: a sequence, so
 * no row lock is held, and none is handed out twice whether taken in a transaction or not.
 */
export async function nextAddressIndexes(db: Db, currency: CurrencyCode, count: number): Promise<number[]> {
  const sequence = currency === 'BTC' ? 'wallet_daemon.hd_index_btc' : 'wallet_daemon.hd_index_aitbc';
  const { rows } = await db.query<{ index: string }>(
    `SELECT nextval('${sequence}') AS index FROM generate_series(1, $1::integer)`,
    [count],
  );
  return rows.map((row) => Number(row.index));
}

const ACCOUNT_COLUMNS = `account_id AS "accountId", kind, currency, address, balance`;

export async function findAccount(db: Db, currency: string, address: string): Promise<Account | null> {
  const { rows } = await db.query<Account>(
    `SELECT ${ACCOUNT_COLUMNS} FROM wallet_daemon.accounts WHERE currency = $1 AND address = $2`,
    [currency, address],
  );
  return rows[0] ?? null;
}

/**
 * The account of (currency, address), created with `kind` on first use. The caller
 * checks the returned kind: an address may already be an escrow hold.
 */
export async function ensureAccount(db: Db, kind: AccountKind, currency: string, address: string): Promise<Account> {
  // Look first: a payer's account exists after its first payment, and an INSERT … ON
  // CONFLICT on a row that concurrent payments are debiting waits for each of them to
  // commit (its unique check sees their uncommitted row versions).
  const existing = await findAccount(db, currency, address);
  if (existing) return existing;
  // DO NOTHING rather than DO UPDATE: no row lock until the balance update.
  const { rows } = await db.query<Account>(
    `INSERT INTO wallet_daemon.accounts (kind, currency, address) VALUES ($1, $2, $3)
     ON CONFLICT (currency, address) DO NOTHING
     RETURNING ${ACCOUNT_COLUMNS}`,
    [kind, currency, address],
  );
  const account = rows[0] ?? (await findAccount(db, currency, address));
  if (!account) throw new Error(`account ${currency}/${address} vanished after insert`);
  return account;
}

/** The account money is minted from; its balance is minus the currency's total supply. */
export function ensureMintAccount(db: Db, currency: string): Promise<Account> {
  return ensureAccount(db, 'mint', currency, `mint:${currency}`);
}

/**
 * Writes a transfer and its entries and moves the balances, in one statement (so a
 * debited account stays locked only until the commit, not across several round trips).
 * Legs must sum to zero (the database re-checks at commit). A leg that would take an
 * address or escrow account below zero fails with INSUFFICIENT_FUNDS. Returns the new
 * balances by account id. Two transfers can only deadlock on each other if they share
 * two accounts (the same faucet pair); the transaction is then retried.
 */
export async function postTransfer(db: Db, transfer: TransferInput, legs: Leg[]): Promise<Map<string, string>> {
  assertBalanced(transfer, legs);
  // Conditional update: the balance check and the debit are one atomic step.
  const { rows } = await db.query<{ account_id: string; balance: string }>(
    `WITH transfer AS (
       INSERT INTO wallet_daemon.transfers (transaction_hash, kind, currency, amount, escrow_id) VALUES ($1, $2, $3, $4, $5)),
     legs AS (SELECT * FROM unnest($6::bigint[], $7::numeric[]) AS l(account_id, amount)),
     moved AS (
       UPDATE wallet_daemon.accounts a SET balance = a.balance + l.amount FROM legs l
        WHERE a.account_id = l.account_id AND (a.kind = 'mint' OR a.balance + l.amount >= 0)
        RETURNING a.account_id, a.balance),
     entries AS (
       INSERT INTO wallet_daemon.entries (transaction_hash, account_id, amount) SELECT $1, account_id, amount FROM legs)
     SELECT account_id, balance FROM moved`,
    [
      transfer.transactionHash,
      transfer.kind,
      transfer.currency,
      formatAmount(transfer.amount),
      transfer.escrowId,
      legs.map((leg) => leg.account.accountId),
      legs.map((leg) => formatAmount(leg.amount)),
    ],
  );
  const balances = new Map(rows.map((row) => [String(row.account_id), row.balance]));
  const short = legs.find((leg) => !balances.has(leg.account.accountId));
  if (short) throw insufficientFunds(short.account, short.amount.neg());
  return balances;
}

/** 402: `ref` cannot pay `amount`. */
export function insufficientFunds(ref: AccountRef, amount: Decimal): WalletDaemonError {
  return new WalletDaemonError(
    'INSUFFICIENT_FUNDS',
    `balance of ${ref.address} is below ${formatAmount(amount)} ${ref.currency}`,
  );
}

/** Double entry: a transfer's legs sum to zero (the database re-checks at commit). */
function assertBalanced(transfer: TransferInput, legs: Leg[]): void {
  const sum = legs.reduce((total, leg) => total.plus(leg.amount), new Decimal(0));
  if (!sum.isZero()) throw new Error(`unbalanced transfer ${transfer.kind}: legs sum to ${sum.toString()}`);
}

/** Escrow holds are not spendable addresses: money only leaves them by release or refund. */
export function assertSpendable(account: Account, field: string): Account {
  if (account.kind !== 'address') throw invalidRequest(`${field} is an escrow address, not a wallet address`);
  return account;
}

export interface NewEscrow {
  escrowId: string;
  paymentId: string;
  currency: string;
  address: string;
  amount: Decimal;
  payer: string;
  timeoutSeconds: number;
  createTransactionHash: string;
}

/** Inserts held escrows (one statement for all); returns their rows in input order. */
export async function insertEscrows(db: Db, escrows: NewEscrow[]): Promise<EscrowRow[]> {
  const column = <T>(pick: (e: NewEscrow) => T) => escrows.map(pick);
  const { rows } = await db.query<EscrowRow>(
    `INSERT INTO wallet_daemon.escrows
       (escrow_id, payment_id, currency, address, amount, payer, timeout_seconds, expires_at, create_transaction_hash)
     SELECT escrow_id, payment_id, currency, address, amount, payer, timeout_seconds,
            now() + timeout_seconds * interval '1 second', create_transaction_hash
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::integer[], $8::char(64)[])
          AS e(escrow_id, payment_id, currency, address, amount, payer, timeout_seconds, create_transaction_hash)
     RETURNING *`,
    [
      column((e) => e.escrowId),
      column((e) => e.paymentId),
      column((e) => e.currency),
      column((e) => e.address),
      column((e) => formatAmount(e.amount)),
      column((e) => e.payer),
      column((e) => e.timeoutSeconds),
      column((e) => e.createTransactionHash),
    ],
  );
  const byId = new Map(rows.map((row) => [row.escrow_id, row]));
  return escrows.map((e) => byId.get(e.escrowId) as EscrowRow);
}

/**
 * Takes back escrows inserted by this transaction whose create will not happen (their
 * payer turned out short once locked), with their still empty hold accounts.
 */
export async function discardNewEscrows(db: Db, escrowIds: string[], holdAccountIds: string[]): Promise<void> {
  if (escrowIds.length === 0) return;
  await db.query(`DELETE FROM wallet_daemon.escrows WHERE escrow_id = ANY($1::uuid[]) AND state = 'held'`, [escrowIds]);
  await db.query(
    `DELETE FROM wallet_daemon.accounts WHERE account_id = ANY($1::bigint[]) AND kind = 'escrow' AND balance = 0`,
    [holdAccountIds],
  );
}

export async function findEscrow(db: Db, escrowId: string): Promise<EscrowRow | null> {
  const { rows } = await db.query<EscrowRow>(`SELECT * FROM wallet_daemon.escrows WHERE escrow_id = $1`, [escrowId]);
  return rows[0] ?? null;
}

export interface Settlement {
  escrowId: string;
  state: 'released' | 'refunded';
  /** Payee on release, refund address on refund. */
  recipient: string;
  /** On a release: what the payee gets (the whole amount unless a partial release). */
  releasedAmount: Decimal | null;
  /** On a partial release: where the rest goes, in the same transfer. */
  refundAddress: string | null;
  transactionHash: string;
  reason: string | null;
}

export interface LedgerTotals {
  minted: string;
  balances: string;
  held: string;
}

/** Supply check of one currency, read in one statement so it is a consistent snapshot. */
export async function ledgerTotals(db: Db, currency: string): Promise<LedgerTotals> {
  const { rows } = await db.query<LedgerTotals>(
    `SELECT coalesce(-sum(balance) FILTER (WHERE kind = 'mint'), 0)   AS minted,
            coalesce(sum(balance) FILTER (WHERE kind = 'address'), 0) AS balances,
            coalesce(sum(balance) FILTER (WHERE kind = 'escrow'), 0)  AS held
     FROM wallet_daemon.accounts WHERE currency = $1`,
    [currency],
  );
  return rows[0];
}

export interface TransferView {
  transaction_hash: string;
  kind: TransferKind;
  amount: string;
  from: string;
  to: string;
  credits: Array<{ address: string; amount: string }>;
  created_at: Date;
}

/** The transfers that touched one escrow, oldest first, with their debited and credited addresses. */
export async function escrowTransfers(db: Db, escrowId: string): Promise<TransferView[]> {
  const { rows } = await db.query<TransferView>(
    `SELECT t.transaction_hash, t.kind, t.amount, t.created_at,
            (SELECT a.address FROM wallet_daemon.entries e JOIN wallet_daemon.accounts a USING (account_id)
             WHERE e.transaction_hash = t.transaction_hash AND e.amount < 0 LIMIT 1) AS "from",
            (SELECT a.address FROM wallet_daemon.entries e JOIN wallet_daemon.accounts a USING (account_id)
             WHERE e.transaction_hash = t.transaction_hash AND e.amount > 0 ORDER BY e.entry_id LIMIT 1) AS "to",
            -- Every credited address: a partial release credits the payee first, then the refund address.
            (SELECT json_agg(json_build_object('address', a.address, 'amount', e.amount::text) ORDER BY e.entry_id)
               FROM wallet_daemon.entries e JOIN wallet_daemon.accounts a USING (account_id)
              WHERE e.transaction_hash = t.transaction_hash AND e.amount > 0) AS credits
     FROM wallet_daemon.transfers t
     WHERE t.escrow_id = $1
     ORDER BY t.seq`,
    [escrowId],
  );
  return rows;
}

/*
 * Set-based forms of the above, for settle-batch and create-batch: one statement per
 * step for the whole batch instead of one per item, with the same checks and the same
 * rows written.
 */

export interface AccountRef {
  currency: string;
  address: string;
}

export async function findEscrows(db: Db, escrowIds: string[]): Promise<Map<string, EscrowRow>> {
  const { rows } = await db.query<EscrowRow>(`SELECT * FROM wallet_daemon.escrows WHERE escrow_id = ANY($1::uuid[])`, [
    escrowIds,
  ]);
  return new Map(rows.map((row) => [row.escrow_id, row]));
}

/**
 * Creates the missing address accounts of `refs` and returns every named account by
 * `currency/address`, with the accounts of `existing` (never created here) read in the
 * same lookup.
 */
export async function ensureAddressAccounts(
  db: Db,
  refs: AccountRef[],
  existing: AccountRef[] = [],
): Promise<Map<string, Account>> {
  // Look first, as ensureAccount does: recipients are often payers' hot accounts.
  const found = await findAccounts(db, [...refs, ...existing]);
  const missing = refs.filter((ref) => !found.has(accountKey(ref)));
  if (missing.length === 0) return found;
  for (const [key, account] of await insertAccounts(db, 'address', missing)) found.set(key, account);
  return found;
}

/**
 * Creates the accounts of `kind` (no row lock until a balance moves) and returns every
 * named account; one that already existed is returned as it is, whatever its kind.
 */
export async function insertAccounts(db: Db, kind: AccountKind, refs: AccountRef[]): Promise<Map<string, Account>> {
  // One round trip: the new rows from RETURNING, the ones already there from the
  // statement's snapshot (which does not show its own inserts, so nothing comes twice).
  const { rows } = await db.query<Account>(
    `WITH inserted AS (
       INSERT INTO wallet_daemon.accounts (kind, currency, address)
       SELECT $1, currency, address FROM unnest($2::text[], $3::text[]) AS u(currency, address)
       ON CONFLICT (currency, address) DO NOTHING
       RETURNING ${ACCOUNT_COLUMNS})
     SELECT * FROM inserted
     UNION ALL
     SELECT ${ACCOUNT_COLUMNS} FROM wallet_daemon.accounts
     JOIN unnest($2::text[], $3::text[]) AS u(currency, address) USING (currency, address)`,
    [kind, refs.map((r) => r.currency), refs.map((r) => r.address)],
  );
  const found = new Map(rows.map((account) => [accountKey(account), account]));
  // Only an account another transaction inserted meanwhile is in neither half: it was
  // committed after this statement's snapshot, so a new statement finds it.
  const missing = refs.filter((ref) => !found.has(accountKey(ref)));
  if (missing.length > 0) for (const [key, account] of await findAccounts(db, missing)) found.set(key, account);
  return found;
}

/**
 * Inserts the accounts of `kind` that do not exist yet and returns only those: an address
 * the ledger already knows is left as it is and missing from the answer. Escrow holds
 * are made with it, in the one statement that also proves each address fresh.
 */
export async function insertNewAccounts(db: Db, kind: AccountKind, refs: AccountRef[]): Promise<Map<string, Account>> {
  const { rows } = await db.query<Account>(
    `INSERT INTO wallet_daemon.accounts (kind, currency, address)
     SELECT $1, currency, address FROM unnest($2::text[], $3::text[]) AS u(currency, address)
     ON CONFLICT (currency, address) DO NOTHING
     RETURNING ${ACCOUNT_COLUMNS}`,
    [kind, refs.map((r) => r.currency), refs.map((r) => r.address)],
  );
  return new Map(rows.map((account) => [accountKey(account), account]));
}

export async function findAccounts(db: Db, refs: AccountRef[]): Promise<Map<string, Account>> {
  const { rows } = await db.query<Account>(
    `SELECT ${ACCOUNT_COLUMNS} FROM wallet_daemon.accounts
     JOIN unnest($1::text[], $2::text[]) AS u(currency, address) USING (currency, address)`,
    [refs.map((r) => r.currency), refs.map((r) => r.address)],
  );
  return new Map(rows.map((account) => [accountKey(account), account]));
}

export function accountKey(ref: AccountRef): string {
  return `${ref.currency}/${ref.address}`;
}

/**
 * Compare-and-set from `held` to the settled state for one escrow or many (each at most
 * once): returns the rows that moved; an escrow missing from them was no longer held —
 * somebody else settled it first.
 */
export async function claimSettlements(db: Db, settlements: Settlement[]): Promise<EscrowRow[]> {
  const { rows } = await db.query<EscrowRow>(
    `UPDATE wallet_daemon.escrows e
     SET state = s.state,
         payee = CASE WHEN s.state = 'released' THEN s.recipient END,
         refund_address = CASE WHEN s.state = 'refunded' THEN s.recipient ELSE s.refund_address END,
         released_amount = CASE WHEN s.state = 'released' THEN s.released_amount END,
         settle_transaction_hash = s.transaction_hash, settle_reason = s.reason, settled_at = now()
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::text[])
          AS s(escrow_id, state, recipient, transaction_hash, reason, released_amount, refund_address)
     WHERE e.escrow_id = s.escrow_id AND e.state = 'held'
     RETURNING e.*`,
    [
      settlements.map((s) => s.escrowId),
      settlements.map((s) => s.state),
      settlements.map((s) => s.recipient),
      settlements.map((s) => s.transactionHash),
      settlements.map((s) => s.reason),
      settlements.map((s) => (s.releasedAmount ? formatAmount(s.releasedAmount) : null)),
      settlements.map((s) => s.refundAddress),
    ],
  );
  return rows;
}

/**
 * Moves a held escrow's expiry to `expiresAt`, never earlier than it already is (so
 * extensions arriving out of order end at the latest one). Returns the row as it now
 * stands, or null when no such escrow exists; the caller checks that it is still held.
 */
export async function extendEscrowExpiry(db: Db, escrowId: string, expiresAt: Date): Promise<EscrowRow | null> {
  const { rows } = await db.query<EscrowRow>(
    `WITH target AS (SELECT * FROM wallet_daemon.escrows WHERE escrow_id = $1 FOR UPDATE),
     moved AS (
       UPDATE wallet_daemon.escrows e SET expires_at = GREATEST(e.expires_at, $2::timestamptz)
         FROM target t WHERE e.escrow_id = t.escrow_id AND t.state = 'held' RETURNING e.*)
     SELECT * FROM moved UNION ALL SELECT * FROM target WHERE NOT EXISTS (SELECT 1 FROM moved)`,
    [escrowId, expiresAt.toISOString()],
  );
  return rows[0] ?? null;
}

/**
 * Locks the accounts in id order (so two batches cannot deadlock on order) and returns
 * their balances as of the lock, by account id. FOR NO KEY UPDATE, as in `postTransfers`:
 * other batches' entries for these accounts are written meanwhile, not after this commit.
 */
export async function lockAccounts(db: Db, accountIds: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ account_id: string; balance: string }>(
    `SELECT account_id, balance FROM wallet_daemon.accounts WHERE account_id = ANY($1::bigint[]) ORDER BY account_id FOR NO KEY UPDATE`,
    [accountIds],
  );
  return new Map(rows.map((row) => [String(row.account_id), row.balance]));
}

/**
 * postTransfer for many transfers, in two statements, shared rows last. An address
 * account (a payer, a refund address, a payee) is shared by every batch that moves its
 * money, and its row lock, held to the commit, makes those batches wait for each other;
 * so the first statement writes what belongs to this batch alone — the transfers, their
 * entries, and the balances of the escrow holds (a hold is only ever moved by the
 * transaction that created or claimed its escrow) — and the second moves the shared
 * balances (address and mint accounts), locked in id order so two batches cannot
 * deadlock on order; the batch routes post their transfers as their last step, so these
 * locks are held only until the commit that follows. The locks are FOR NO KEY UPDATE, which an entry's
 * foreign-key check (FOR KEY SHARE) does not wait for: another batch's first statement
 * never waits for this batch's commit. A balance check failing here means an invariant
 * broke (holds only ever hold their escrow's amount; payers were locked and checked
 * before), so the whole batch fails rather than guessing which transfer to drop.
 */
export async function postTransfers(db: Db, transfers: Array<{ transfer: TransferInput; legs: Leg[] }>): Promise<void> {
  for (const { transfer, legs } of transfers) assertBalanced(transfer, legs);
  const column = <T>(pick: (t: TransferInput) => T) => transfers.map(({ transfer }) => pick(transfer));
  const entries = transfers.flatMap(({ transfer, legs }) =>
    legs.map((leg) => ({ hash: transfer.transactionHash, leg })),
  );
  // One balance change per account: its legs summed, holds apart from shared accounts.
  const holds = new Map<string, Decimal>();
  const shared = new Map<string, Decimal>();
  for (const { leg } of entries) {
    const deltas = leg.account.kind === 'escrow' ? holds : shared;
    deltas.set(leg.account.accountId, (deltas.get(leg.account.accountId) ?? new Decimal(0)).plus(leg.amount));
  }
  const { rows } = await db.query<{ moved: number }>(
    `WITH transfers AS (
       INSERT INTO wallet_daemon.transfers (transaction_hash, kind, currency, amount, escrow_id)
       SELECT * FROM unnest($1::char(64)[], $2::text[], $3::text[], $4::numeric[], $5::uuid[])),
     moved AS (
       UPDATE wallet_daemon.accounts a SET balance = a.balance + d.delta
         FROM unnest($6::bigint[], $7::numeric[]) AS d(account_id, delta)
        WHERE a.account_id = d.account_id AND a.kind = 'escrow' AND a.balance + d.delta >= 0
        RETURNING a.account_id),
     entries AS (
       INSERT INTO wallet_daemon.entries (transaction_hash, account_id, amount)
       SELECT * FROM unnest($8::char(64)[], $9::bigint[], $10::numeric[]))
     SELECT count(*)::int AS moved FROM moved`,
    [
      column((t) => t.transactionHash),
      column((t) => t.kind),
      column((t) => t.currency),
      column((t) => formatAmount(t.amount)),
      column((t) => t.escrowId),
      [...holds.keys()],
      [...holds.values()].map(formatAmount),
      entries.map((e) => e.hash),
      entries.map((e) => e.leg.account.accountId),
      entries.map((e) => formatAmount(e.leg.amount)),
    ],
  );
  if (rows[0].moved !== holds.size) throw new Error('a batched transfer would take an escrow hold below zero');
  if (shared.size === 0) return;
  // The update reads the accounts through `locked`, whose rows are locked in id order as
  // they are sorted; the update itself only ever meets rows this statement already holds.
  const { rows: sharedRows } = await db.query<{ moved: number }>(
    `WITH locked AS (
       SELECT account_id FROM wallet_daemon.accounts WHERE account_id = ANY($1::bigint[])
        ORDER BY account_id FOR NO KEY UPDATE),
     moved AS (
       UPDATE wallet_daemon.accounts a SET balance = a.balance + d.delta
         FROM locked l JOIN unnest($1::bigint[], $2::numeric[]) AS d(account_id, delta) USING (account_id)
        WHERE a.account_id = l.account_id AND a.kind <> 'escrow' AND (a.kind = 'mint' OR a.balance + d.delta >= 0)
        RETURNING a.account_id)
     SELECT count(*)::int AS moved FROM moved`,
    [[...shared.keys()], [...shared.values()].map(formatAmount)],
  );
  if (sharedRows[0].moved !== shared.size) throw new Error('a batched transfer would take an account below zero');
}
