import { Pool } from 'pg';

/** Advisory lock key serialising schema creation when several daemons start together. */
const SCHEMA_LOCK_KEY = 7_734_200_501;

/**
 * The wallet daemon's tables, all in schema `wallet_daemon`. Every statement is
 * idempotent so the whole list runs on each start.
 */
const SCHEMA_STATEMENTS: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS wallet_daemon`,

  // HD address indexes; sequences never block concurrent transactions (gaps are harmless).
  `CREATE SEQUENCE IF NOT EXISTS wallet_daemon.hd_index_btc MINVALUE 0 MAXVALUE 2147483647 START 0`,
  `CREATE SEQUENCE IF NOT EXISTS wallet_daemon.hd_index_aitbc MINVALUE 0 MAXVALUE 2147483647 START 0`,

  `CREATE TABLE IF NOT EXISTS wallet_daemon.accounts (
     account_id  bigserial PRIMARY KEY,
     kind        text NOT NULL CHECK (kind IN ('address', 'escrow', 'mint')),
     currency    text NOT NULL,
     address     text NOT NULL,
     balance     numeric(20, 8) NOT NULL DEFAULT 0,
     created_at  timestamptz NOT NULL DEFAULT now(),
     CONSTRAINT accounts_currency_address_key UNIQUE (currency, address),
     -- Only the mint goes negative: its balance is minus everything ever minted.
     CONSTRAINT accounts_balance_non_negative CHECK (kind = 'mint' OR balance >= 0)
   )`,

  `CREATE TABLE IF NOT EXISTS wallet_daemon.transfers (
     transaction_hash char(64) PRIMARY KEY CHECK (transaction_hash ~ '^[0-9a-f]{64}$'),
     seq              bigserial NOT NULL UNIQUE,
     kind             text NOT NULL CHECK (kind IN ('create', 'release', 'refund', 'faucet')),
     currency         text NOT NULL,
     amount           numeric(20, 8) NOT NULL CHECK (amount > 0),
     escrow_id        uuid,
     created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
     CONSTRAINT transfers_escrow_kind CHECK ((kind = 'faucet') = (escrow_id IS NULL))
   )`,
  `CREATE INDEX IF NOT EXISTS transfers_escrow_id_idx ON wallet_daemon.transfers (escrow_id) WHERE escrow_id IS NOT NULL`,

  `CREATE TABLE IF NOT EXISTS wallet_daemon.entries (
     entry_id         bigserial PRIMARY KEY,
     transaction_hash char(64) NOT NULL REFERENCES wallet_daemon.transfers (transaction_hash),
     account_id       bigint NOT NULL REFERENCES wallet_daemon.accounts (account_id),
     amount           numeric(20, 8) NOT NULL CHECK (amount <> 0)
   )`,
  `CREATE INDEX IF NOT EXISTS entries_transaction_hash_idx ON wallet_daemon.entries (transaction_hash)`,
  `CREATE INDEX IF NOT EXISTS entries_account_id_idx ON wallet_daemon.entries (account_id)`,

  // Double entry, enforced at commit: every transfer's entries sum to zero.
  `CREATE OR REPLACE FUNCTION wallet_daemon.assert_transfer_balanced() RETURNS trigger
   LANGUAGE plpgsql AS $$
   BEGIN
     IF (SELECT sum(amount) FROM wallet_daemon.entries WHERE transaction_hash = NEW.transaction_hash) <> 0 THEN
       RAISE EXCEPTION 'transfer % is not balanced', NEW.transaction_hash USING ERRCODE = 'check_violation';
     END IF;
     RETURN NULL;
   END $$`,
  // CREATE CONSTRAINT TRIGGER has no IF NOT EXISTS.
  `DO $$ BEGIN
     IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgname = 'entries_balanced' AND tgrelid = 'wallet_daemon.entries'::regclass) THEN
       CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON wallet_daemon.entries
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet_daemon.assert_transfer_balanced();
     END IF;
   END $$`,

  `CREATE TABLE IF NOT EXISTS wallet_daemon.escrows (
     escrow_id               uuid PRIMARY KEY,
     payment_id              text NOT NULL,
     currency                text NOT NULL,
     address                 text NOT NULL,
     amount                  numeric(20, 8) NOT NULL CHECK (amount > 0),
     payer                   text NOT NULL,
     state                   text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'released', 'refunded')),
     payee                   text,
     refund_address          text,
     settle_reason           text,
     timeout_seconds         integer NOT NULL CHECK (timeout_seconds > 0),
     expires_at              timestamptz NOT NULL,
     -- Deferred so the settling UPDATE can run before its transfer row is written.
     create_transaction_hash char(64) NOT NULL
       REFERENCES wallet_daemon.transfers (transaction_hash) DEFERRABLE INITIALLY DEFERRED,
     settle_transaction_hash char(64)
       REFERENCES wallet_daemon.transfers (transaction_hash) DEFERRABLE INITIALLY DEFERRED,
     created_at              timestamptz NOT NULL DEFAULT now(),
     settled_at              timestamptz,
     CONSTRAINT escrows_currency_address_key UNIQUE (currency, address),
     -- An escrow is held, or released to a payee, or refunded to a refund address: never two of them.
     CONSTRAINT escrows_settlement_consistent CHECK (
       (state = 'held' AND settle_transaction_hash IS NULL AND settled_at IS NULL
          AND payee IS NULL AND refund_address IS NULL)
       OR (state = 'released' AND settle_transaction_hash IS NOT NULL AND settled_at IS NOT NULL
          AND payee IS NOT NULL AND refund_address IS NULL)
       OR (state = 'refunded' AND settle_transaction_hash IS NOT NULL AND settled_at IS NOT NULL
          AND refund_address IS NOT NULL AND payee IS NULL))
   )`,
  `CREATE INDEX IF NOT EXISTS escrows_payment_id_idx ON wallet_daemon.escrows (payment_id)`,

  // Partial release: the payee gets `released_amount`, the rest goes back to `refund_address`
  // in the same transfer. NULL on a release is the whole amount (releases before this column).
  `ALTER TABLE wallet_daemon.escrows ADD COLUMN IF NOT EXISTS released_amount numeric(20, 8)`,
  // The settlement check, widened once to allow a released escrow with a refund leg; the
  // replacement is guarded by its new name, so starting again does not re-validate the table.
  `DO $$ BEGIN
     IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'escrows_settlement_consistent_v2') THEN
       ALTER TABLE wallet_daemon.escrows DROP CONSTRAINT IF EXISTS escrows_settlement_consistent;
       ALTER TABLE wallet_daemon.escrows ADD CONSTRAINT escrows_settlement_consistent_v2 CHECK (
         (state = 'held' AND settle_transaction_hash IS NULL AND settled_at IS NULL
            AND payee IS NULL AND refund_address IS NULL AND released_amount IS NULL)
         OR (state = 'released' AND settle_transaction_hash IS NOT NULL AND settled_at IS NOT NULL
            AND payee IS NOT NULL
            AND (released_amount IS NULL OR (released_amount > 0 AND released_amount <= amount))
            -- a refund leg exactly when less than the whole amount was released
            AND ((refund_address IS NOT NULL) = (released_amount IS NOT NULL AND released_amount < amount)))
         OR (state = 'refunded' AND settle_transaction_hash IS NOT NULL AND settled_at IS NOT NULL
            AND refund_address IS NOT NULL AND payee IS NULL AND released_amount IS NULL));
     END IF;
   END $$`,

  `CREATE TABLE IF NOT EXISTS wallet_daemon.idempotency_keys (
     idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 255),
     route           text NOT NULL,
     fingerprint     char(64) NOT NULL,
     status_code     integer NOT NULL,
     response_body   json NOT NULL, -- json, not jsonb: replays keep the original key order
     created_at      timestamptz NOT NULL DEFAULT now()
   )`,

  // Room on each page for the updates that follow an insert (a hold's balance, an escrow's
  // settlement, a key's answer), so they can be HOT: no indexed column changes, and with
  // free space on the row's page the new version stays there and no index gets an entry.
  // Packed full (the default), almost none were (README "Room for HOT updates").
  // Set once: ALTER TABLE takes a table lock, which a restart beside busy daemons should not.
  ...['accounts', 'escrows', 'idempotency_keys'].map(
    (table) => `DO $$ BEGIN
       IF NOT 'fillfactor=70' = ANY (coalesce((SELECT reloptions FROM pg_class
                                                WHERE oid = 'wallet_daemon.${table}'::regclass), '{}')) THEN
         ALTER TABLE wallet_daemon.${table} SET (fillfactor = 70);
       END IF;
     END $$`,
  ),
];

/** Creates the wallet_daemon schema and tables if missing, under a Postgres advisory lock. */
export async function ensureWalletSchema(pool: Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK_KEY]);
    try {
      for (const statement of SCHEMA_STATEMENTS) await client.query(statement);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}
