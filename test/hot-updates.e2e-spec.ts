import { Pool, PoolClient } from 'pg';
import { ensureWalletSchema } from '../src/wallet-daemon/schema';
import { createIsolatedDatabase } from './support/database';

// The tables whose rows are updated after they are written keep room on each page
// (fillfactor 70), so such an update stays on its page and writes no index entry (a HOT
// update). Each case packs a table's first page the way inserts fill it, then updates a
// row of that page without touching an indexed column: with the default fillfactor (100)
// the page has no room and the new version moves to another page.

/** Inserts `rows` in one statement, updates one row of the first page; says whether that update was HOT. */
async function updateOnFullPage(
  client: PoolClient,
  table: string,
  insert: string,
  key: string,
  update: string,
): Promise<{ hot: number; samePage: boolean }> {
  await client.query('BEGIN');
  try {
    await client.query(insert);
    const { rows } = await client.query<{ id: string; block: string }>(
      `SELECT ${key}::text AS id, (ctid::text::point)[0]::int AS block FROM ${table}
        WHERE (ctid::text::point)[0] = 0 ORDER BY ctid LIMIT 1`,
    );
    const [first] = rows;
    await client.query(`${update} WHERE ${key} = $1`, [first.id]);
    const { rows: after } = await client.query<{ block: number; hot: string }>(
      `SELECT (ctid::text::point)[0]::int AS block, pg_stat_get_xact_tuples_hot_updated($2::regclass) AS hot
         FROM ${table} WHERE ${key} = $1`,
      [first.id, table],
    );
    return { hot: Number(after[0].hot), samePage: after[0].block === 0 };
  } finally {
    await client.query('ROLLBACK');
  }
}

async function fillfactors(pool: Pool, tables: string[]): Promise<Record<string, string[] | null>> {
  const { rows } = await pool.query<{ name: string; reloptions: string[] | null }>(
    `SELECT oid::regclass::text AS name, reloptions FROM pg_class WHERE oid = ANY($1::regclass[])`,
    [tables],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.reloptions]));
}

describe('room for HOT updates', () => {
  let pool: Pool;
  beforeAll(async () => {
    pool = new Pool({ connectionString: await createIsolatedDatabase(), max: 2 });
  });
  afterAll(() => pool?.end());

  it('coordinator: job, payment_escrows and idempotency_keys leave 30 % of each page free (the migration)', async () => {
    expect(await fillfactors(pool, ['job', 'payment_escrows', 'idempotency_keys', 'job_payments'])).toEqual({
      job: ['fillfactor=70'],
      payment_escrows: ['fillfactor=70'],
      idempotency_keys: ['fillfactor=70'],
      // Its status is indexed, so a status change is never HOT: no room kept.
      job_payments: null,
    });
  });

  it("coordinator: a job's payment mirror changing on a packed page stays on that page (HOT)", async () => {
    const client = await pool.connect();
    try {
      const result = await updateOnFullPage(
        client,
        'job',
        `INSERT INTO job (job_id, client_id, state, payload, ttl_seconds, requested_at, expires_at, updated_at)
         SELECT gen_random_uuid(), 'hot-test', 'queued', '{"job_type": "ai_inference"}', 60, now(), now() + interval '1 hour', now()
           FROM generate_series(1, 400)`,
        'job_id',
        `UPDATE job SET payment_status = 'refunding', updated_at = now()`,
      );
      expect(result).toEqual({ hot: 1, samePage: true });
    } finally {
      client.release();
    }
  });

  it("wallet daemon: accounts, escrows and idempotency_keys leave room, set once however often the daemon starts; a hold's balance update is HOT", async () => {
    await ensureWalletSchema(pool);
    await ensureWalletSchema(pool);
    expect(
      await fillfactors(pool, [
        'wallet_daemon.accounts',
        'wallet_daemon.escrows',
        'wallet_daemon.idempotency_keys',
        'wallet_daemon.entries',
      ]),
    ).toEqual({
      'wallet_daemon.accounts': ['fillfactor=70'],
      'wallet_daemon.escrows': ['fillfactor=70'],
      'wallet_daemon.idempotency_keys': ['fillfactor=70'],
      // Append-only: never updated.
      'wallet_daemon.entries': null,
    });

    const client = await pool.connect();
    try {
      const result = await updateOnFullPage(
        client,
        'wallet_daemon.accounts',
        `INSERT INTO wallet_daemon.accounts (kind, currency, address)
         SELECT 'escrow', 'BTC', 'hot-test-' || i FROM generate_series(1, 400) AS i`,
        'account_id',
        `UPDATE wallet_daemon.accounts SET balance = balance + 1`,
      );
      expect(result).toEqual({ hot: 1, samePage: true });
    } finally {
      client.release();
    }
  });
});
