import type { Pool } from 'pg';
import { round, sleep } from './util';

/**
 * Database work per operation, independent of how busy the machine is: transactions
 * (pg_stat_database.xact_commit, read-only ones included), rows written, xids assigned
 * (= write transactions, each an fsync'd commit) and WAL bytes written (every row
 * version and index entry, so a HOT update shows as less WAL than one that adds index
 * entries). Xids and WAL are cluster-wide, so on a shared server other databases' writes
 * count too.
 */
interface Counters {
  xids: bigint;
  wal: bigint;
  byDb: Map<string, { commits: number; inserted: number; updated: number; fetched: number; returned: number }>;
}

async function read(db: Pool, databases: string[]): Promise<Counters> {
  const { rows: x } = await db.query(
    `SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax, pg_current_wal_insert_lsn()::text AS lsn`,
  );
  const { rows } = await db.query(
    `SELECT datname, xact_commit::float8 AS commits, tup_inserted::float8 AS inserted, tup_updated::float8 AS updated,
            tup_fetched::float8 AS fetched, tup_returned::float8 AS returned
       FROM pg_stat_database WHERE datname = ANY($1)`,
    [databases],
  );
  return { xids: BigInt(x[0].xmax), wal: lsnBytes(x[0].lsn), byDb: new Map(rows.map((r) => [r.datname, r])) };
}

export class DbActivity {
  private constructor(
    private readonly db: Pool,
    private readonly databases: { coordinator: string; wallet: string },
    private readonly start: Counters,
  ) {}

  static async begin(db: Pool, databases: { coordinator: string; wallet: string }): Promise<DbActivity> {
    return new DbActivity(db, databases, await read(db, [databases.coordinator, databases.wallet]));
  }

  /** Per `operations` (e.g. paid jobs created). Waits for backends to flush their statistics (~1 s when idle). */
  async perOperation(operations: number): Promise<Record<string, number>> {
    await sleep(1200);
    const end = await read(this.db, [this.databases.coordinator, this.databases.wallet]);
    const n = Math.max(operations, 1);
    const delta = (
      which: 'coordinator' | 'wallet',
      field: 'commits' | 'inserted' | 'updated' | 'fetched' | 'returned',
    ) =>
      round(
        ((end.byDb.get(this.databases[which])?.[field] ?? 0) -
          (this.start.byDb.get(this.databases[which])?.[field] ?? 0)) /
          n,
        2,
      );
    return {
      operations,
      write_transactions: round(Number(end.xids - this.start.xids) / n, 2),
      wal_bytes: Math.round(Number(end.wal - this.start.wal) / n),
      coordinator_transactions: delta('coordinator', 'commits'),
      coordinator_rows_inserted: delta('coordinator', 'inserted'),
      coordinator_rows_updated: delta('coordinator', 'updated'),
      daemon_transactions: delta('wallet', 'commits'),
      daemon_rows_inserted: delta('wallet', 'inserted'),
      daemon_rows_updated: delta('wallet', 'updated'),
    };
  }
}

/** A WAL position ("16/B374D848") as a byte offset. */
function lsnBytes(lsn: string): bigint {
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

export function renderDb(a: Record<string, number> | undefined): string {
  if (!a) return '';
  return (
    `per operation: ${a.write_transactions} write transactions (fsync'd commits, both databases), ${a.wal_bytes} WAL bytes, ` +
    `coordinator ${a.coordinator_transactions} transactions / ${a.coordinator_rows_inserted} rows inserted / ${a.coordinator_rows_updated} updated, ` +
    `daemon ${a.daemon_transactions} transactions / ${a.daemon_rows_inserted} inserted / ${a.daemon_rows_updated} updated`
  );
}
