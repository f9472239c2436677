import Decimal from 'decimal.js';
import { Pool, PoolClient } from 'pg';
import {
  Account,
  accountKey,
  ensureAccount,
  ensureMintAccount,
  findAccounts,
  insertAccounts,
  postTransfers,
  withTransaction,
} from '../src/wallet-daemon/ledger';
import { PreparedStatementClient } from '../src/wallet-daemon/prepared-client';
import { ensureWalletSchema } from '../src/wallet-daemon/schema';
import { createIsolatedDatabase } from './support/database';

// The daemon's ledger statements and pool client against the real server, below HTTP:
// races between two transactions are staged here step by step, which requests cannot do.

let url: string;
let pool: Pool;

beforeAll(async () => {
  url = await createIsolatedDatabase();
  pool = new Pool({ connectionString: url, max: 4, Client: PreparedStatementClient });
  await ensureWalletSchema(pool);
});
afterAll(() => pool.end());

let next = 0;
const address = (what: string) => `${what}-${process.pid}-${++next}`;

async function balances(accounts: Account[]): Promise<string[]> {
  const found = await findAccounts(pool, accounts);
  // An account that is missing reads as 'missing', which no expected balance equals.
  return accounts.map((a) => found.get(accountKey(a))?.balance ?? 'missing');
}

describe('insertAccounts', () => {
  it('returns new and existing accounts alike, each once', async () => {
    const old = await ensureAccount(pool, 'address', 'BTC', address('old'));
    const fresh = address('fresh');
    const found = await insertAccounts(pool, 'escrow', [
      { currency: 'BTC', address: old.address },
      { currency: 'BTC', address: fresh },
    ]);
    expect(found.get(accountKey(old))).toEqual(old);
    expect(found.get(accountKey({ currency: 'BTC', address: fresh }))).toMatchObject({
      kind: 'escrow',
      currency: 'BTC',
      address: fresh,
      balance: '0.00000000',
    });
    expect(found.size).toBe(2);
  });

  it('finds an account another transaction inserted while this one waited on it', async () => {
    const contested = address('contested');
    const other = await pool.connect();
    let waiting: Promise<Map<string, Account>> | undefined;
    try {
      await other.query('BEGIN');
      await other.query(`INSERT INTO wallet_daemon.accounts (kind, currency, address) VALUES ('address', 'BTC', $1)`, [
        contested,
      ]);
      // This insert waits on the other's uncommitted row, then skips it: the row was
      // committed after its snapshot, so only a second look can return it.
      waiting = insertAccounts(pool, 'address', [{ currency: 'BTC', address: contested }]);
      await waitForLockWait();
      await other.query('COMMIT');
    } finally {
      other.release();
    }
    const found = await waiting;
    expect(found.get(accountKey({ currency: 'BTC', address: contested }))).toMatchObject({
      kind: 'address',
      address: contested,
    });
  });
});

describe('postTransfers', () => {
  async function funded(amount: string): Promise<{ payer: Account; hold: Account }> {
    const payer = await ensureAccount(pool, 'address', 'BTC', address('payer'));
    const hold = await ensureAccount(pool, 'escrow', 'BTC', address('hold'));
    const mint = await ensureMintAccount(pool, 'BTC');
    await withTransaction(pool, (db) => postTransfers(db, [transfer(mint, payer, amount, 'faucet')]));
    return { payer, hold };
  }

  it('moves every balance by its summed legs and writes the transfers and entries', async () => {
    const { payer, hold } = await funded('5');
    const first = transfer(payer, hold, '1.25', 'create');
    const second = transfer(payer, hold, '2.5', 'create');
    await withTransaction(pool, (db) => postTransfers(db, [first, second]));
    expect(await balances([payer, hold])).toEqual(['1.25000000', '3.75000000']);
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM wallet_daemon.entries WHERE transaction_hash = ANY($1::char(64)[])`,
      [[first.transfer.transactionHash, second.transfer.transactionHash]],
    );
    expect(rows[0].n).toBe(4);
  });

  it('refuses the whole batch when one account would go below zero, and writes nothing', async () => {
    const { payer, hold } = await funded('1');
    const fits = transfer(payer, hold, '0.5', 'create');
    const overdraws = transfer(payer, hold, '0.75', 'create');
    await expect(withTransaction(pool, (db) => postTransfers(db, [fits, overdraws]))).rejects.toThrow(
      'a batched transfer would take an account below zero',
    );
    expect(await balances([payer, hold])).toEqual(['1.00000000', '0.00000000']);
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM wallet_daemon.transfers WHERE transaction_hash = $1`,
      [fits.transfer.transactionHash],
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses the whole batch when an escrow hold would go below zero, and writes nothing', async () => {
    const { payer, hold } = await funded('1');
    await withTransaction(pool, (db) => postTransfers(db, [transfer(payer, hold, '0.5', 'create')]));
    const overdraws = transfer(hold, payer, '0.75', 'refund');
    await expect(withTransaction(pool, (db) => postTransfers(db, [overdraws]))).rejects.toThrow(
      'a batched transfer would take an escrow hold below zero',
    );
    expect(await balances([payer, hold])).toEqual(['0.50000000', '0.50000000']);
  });

  it("writes a batch's transfers while another batch holds the account both pay into, and waits only to move that balance", async () => {
    const { payer, hold: first } = await funded('2');
    const second = await ensureAccount(pool, 'escrow', 'BTC', address('hold'));
    await withTransaction(pool, (db) =>
      postTransfers(db, [transfer(payer, first, '1', 'create'), transfer(payer, second, '1', 'create')]),
    );
    const refundAddress = await ensureAccount(pool, 'address', 'BTC', address('refund'));
    const holder = await pool.connect();
    let waiting: Promise<void> | undefined;
    try {
      await holder.query('BEGIN');
      await postTransfers(holder, [transfer(first, refundAddress, '1', 'refund')]);
      // The other batch credits the same account: its transfers and entries go in at
      // once, and it waits on the account's row in its last statement only.
      waiting = withTransaction(pool, (db) => postTransfers(db, [transfer(second, refundAddress, '1', 'refund')]));
      await waitForLockWait();
      const { rows } = await pool.query<{ query: string }>(
        `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      expect(rows.map((r) => r.query.trimStart().slice(0, 15))).toEqual(['WITH locked AS ']);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    await waiting;
    expect(await balances([first, second, refundAddress])).toEqual(['0.00000000', '0.00000000', '2.00000000']);
  });
});

describe('the pool client', () => {
  async function preparedTexts(client: PoolClient): Promise<string[]> {
    const { rows } = await client.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements');
    return rows.map((row) => row.statement);
  }

  it('runs a statement with parameters as a named prepared statement, once per connection', async () => {
    const client = await pool.connect();
    try {
      const text = 'SELECT $1::int + 1 AS n';
      expect((await client.query<{ n: number }>(text, [41])).rows[0].n).toBe(42);
      expect((await client.query<{ n: number }>(text, [1])).rows[0].n).toBe(2);
      expect((await preparedTexts(client)).filter((statement) => statement === text)).toHaveLength(1);
    } finally {
      client.release();
    }
  });

  it('keeps the simple protocol without parameters (several statements in one text)', async () => {
    const client = await pool.connect();
    try {
      const text = 'CREATE TEMP TABLE t (v int); INSERT INTO t VALUES (1), (2)';
      await client.query('BEGIN');
      await client.query(text);
      const { rows } = await client.query<{ total: string }>('SELECT sum(v) + $1 AS total FROM t', [3]);
      await client.query('ROLLBACK');
      expect(rows[0].total).toBe('6');
      expect(await preparedTexts(client)).not.toContain(text);
    } finally {
      client.release();
    }
  });

  it('passes a query config through as given, and reports the errors of prepared statements', async () => {
    const { rows } = await pool.query<{ s: string }>({ text: 'SELECT $1::text AS s', values: ['as sent'] });
    expect(rows[0].s).toBe('as sent');
    await expect(pool.query('SELECT $1::int AS n', ['not a number'])).rejects.toMatchObject({ code: '22P02' });
  });
});

function transfer(from: Account, to: Account, amount: string, kind: 'create' | 'refund' | 'faucet') {
  const value = new Decimal(amount);
  return {
    transfer: {
      transactionHash: Buffer.from(address('tx')).toString('hex').padEnd(64, '0').slice(0, 64),
      kind,
      currency: 'BTC',
      amount: value,
      escrowId: kind === 'faucet' ? null : '00000000-0000-7000-8000-000000000000',
    },
    legs: [
      { account: from, amount: value.neg() },
      { account: to, amount: value },
    ],
  };
}

/** Until some session of this database waits on a lock (the insert racing the open transaction). */
async function waitForLockWait(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (rows[0].n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the racing insert never waited on the open transaction');
}
