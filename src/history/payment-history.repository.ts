// Owns the payment_rollup and payment_rollup_delta tables; reads job_payments, job and payment_events (never writes them).
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { escapeLiteral, type Pool, type PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { Semaphore } from '../common/concurrency';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { prepared } from '../database/prepared';
import { Transactions } from '../database/transactions';
import type { JobPayment, PaymentEvent, PaymentStatus } from '../payments/job-payment.entity';
import { CsvExport } from './csv-export';
import type { FeedCursor, GroupKey, KeysetCursor, PaymentFilters, RollupPlan } from './history-filters';

/** A payment row with the exact position of its keyset cursor (microsecond timestamp). */
export type PagedPayment = JobPayment & { cursor_at: string };

/** An event of the feed: the audit row, its transaction id and its payment's job. */
export type FeedEvent = Omit<PaymentEvent, 'event_id' | 'details'> & { event_id: string; tx: string; job_id: string };

/** One summary group; absent keys were not grouped by. Count and amount are exact text. */
export interface SummaryRow {
  currency: string;
  status?: PaymentStatus;
  day?: string;
  month?: string;
  client_id?: string | null;
  miner_id?: string | null;
  count: string;
  amount: string;
}

const ISO_MS = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const ISO_US = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
const AMOUNT = (expression: string) => `round(${expression}, COALESCE(sc.scale, 8))::text`;

/**
 * The export's columns, in the documented CSV order (the order of `PaymentView`), each
 * with the SQL that formats it exactly as `toPaymentView` does in JS: amounts at the
 * currency's scale, timestamps ISO-8601 UTC with milliseconds.
 */
const EXPORT_FIELDS: readonly { name: string; sql: string }[] = [
  { name: 'payment_id', sql: 'p.payment_id::text' },
  { name: 'job_id', sql: 'p.job_id::text' },
  { name: 'client_id', sql: 'p.client_id' },
  { name: 'amount', sql: AMOUNT('p.amount') },
  { name: 'currency', sql: 'p.currency' },
  { name: 'status', sql: 'p.status' },
  { name: 'payment_method', sql: 'p.payment_method' },
  { name: 'escrow_id', sql: 'p.escrow_id' },
  { name: 'escrow_address', sql: 'p.escrow_address' },
  { name: 'payer_address', sql: 'p.payer_address' },
  { name: 'refund_address', sql: 'p.refund_address' },
  { name: 'payee_address', sql: 'p.payee_address' },
  { name: 'miner_id', sql: 'p.miner_id' },
  { name: 'provider_id', sql: 'p.provider_id' },
  {
    name: 'released_amount',
    // A partial release recorded what the miner got; NULL there is the whole amount (as `settledAmounts`).
    sql: `CASE p.status WHEN 'released' THEN ${AMOUNT('COALESCE(p.released_amount, p.amount)')} WHEN 'refunded' THEN ${AMOUNT('0')} END`,
  },
  {
    name: 'refunded_amount',
    sql: `CASE p.status WHEN 'refunded' THEN ${AMOUNT('p.amount')} WHEN 'released' THEN ${AMOUNT('p.amount - COALESCE(p.released_amount, p.amount)')} END`,
  },
  { name: 'transaction_hash', sql: 'p.transaction_hash' },
  { name: 'refund_transaction_hash', sql: 'p.refund_transaction_hash' },
  { name: 'created_at', sql: ISO_MS('p.created_at') },
  { name: 'updated_at', sql: ISO_MS('p.updated_at') },
  { name: 'escrowed_at', sql: ISO_MS('p.escrowed_at') },
  { name: 'released_at', sql: ISO_MS('p.released_at') },
  { name: 'refunded_at', sql: ISO_MS('p.refunded_at') },
  { name: 'expires_at', sql: ISO_MS('p.expires_at') },
  { name: 'failure_reason', sql: 'p.failure_reason' },
  { name: 'settle_reason', sql: 'p.settle_reason' },
];

export const EXPORT_COLUMNS: readonly string[] = EXPORT_FIELDS.map((f) => f.name);

/** Each exported NDJSON row as one text value, the whole line, formatted by PostgreSQL (the coordinator only joins lines). */
const NDJSON_LINE = `json_build_object(${EXPORT_FIELDS.map((f) => `'${f.name}', ${f.sql}`).join(', ')})::text || E'\\n'`;

/**
 * The CSV export as one `COPY (SELECT …) TO STDOUT` statement: PostgreSQL formats every
 * field and quotes per RFC 4180 itself (quotes doubled, a field quoted when it holds a
 * comma, quote, CR or LF). Made byte-for-byte what the line-per-row export wrote: NULL is
 * an empty unquoted field (COPY's CSV default), an empty string is turned into NULL (COPY
 * would print it `""`), and COPY's LF line ends become CRLF (`crlfParts`).
 *
 * COPY takes no bind parameters, so every filter value is written into the text as a
 * literal. Each has been validated by `parseFilters` (uuid, decimal, ISO time, principal id,
 * a known currency or status) and is still passed through pg's `escapeLiteral` (quotes
 * doubled; with a backslash, an `E''` literal with backslashes doubled): a value can only
 * ever be a string constant, never SQL, whatever the validation lets through. Scales are
 * integers from the configuration, checked as such.
 */
export function exportCopySql(f: PaymentFilters, scales: ReadonlyMap<string, number>): string {
  const lit = (value: string) => escapeLiteral(value);
  const where: string[] = [];
  if (f.statuses?.length === 0) where.push('false');
  if (f.statuses?.length) where.push(`p.status IN (${f.statuses.map(lit).join(', ')})`);
  if (f.currency !== undefined) where.push(`p.currency = ${lit(f.currency)}`);
  if (f.jobId !== undefined) where.push(`p.job_id = ${lit(f.jobId)}::uuid`);
  if (f.clientId !== undefined) where.push(`p.client_id = ${lit(f.clientId)}`);
  if (f.minerId !== undefined) where.push(`p.miner_id = ${lit(f.minerId)}`);
  if (f.createdFrom) where.push(`p.created_at >= ${lit(f.createdFrom.text)}::timestamptz`);
  if (f.createdTo) where.push(`p.created_at < ${lit(f.createdTo.text)}::timestamptz`);
  if (f.settledFrom) where.push(`COALESCE(p.released_at, p.refunded_at) >= ${lit(f.settledFrom.text)}::timestamptz`);
  if (f.settledTo) where.push(`COALESCE(p.released_at, p.refunded_at) < ${lit(f.settledTo.text)}::timestamptz`);
  if (f.amountMin !== undefined) where.push(`p.amount >= ${lit(f.amountMin)}::numeric`);
  if (f.amountMax !== undefined) where.push(`p.amount <= ${lit(f.amountMax)}::numeric`);
  const scaleRows = [...scales].map(([code, scale]) => {
    if (!Number.isSafeInteger(scale) || scale < 0)
      throw new Error(`currency ${code}: scale ${scale} is not an integer`);
    return `(${lit(code)}, ${scale})`;
  });
  const scaleTable = scaleRows.length
    ? `(VALUES ${scaleRows.join(', ')})`
    : `(SELECT NULL::varchar, NULL::int WHERE false)`;
  const columns = EXPORT_FIELDS.map((c) => `NULLIF(${c.sql}, '') AS ${c.name}`).join(', ');
  return `COPY (SELECT ${columns}
                  FROM job_payments p
                  LEFT JOIN ${scaleTable} AS sc(code, scale) ON sc.code = p.currency
                  ${whereOf(where)}
                 ORDER BY p.created_at DESC, p.payment_id DESC)
          TO STDOUT WITH (FORMAT csv, HEADER true)`;
}

/** Statement parameters, numbered as they are added. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    return `$${this.values.push(value)}`;
  }
}

/** The WHERE conditions of the filters over `job_payments p` (statuses excluded: callers place them). */
function filterConditions(f: PaymentFilters, params: Params): string[] {
  const where: string[] = [];
  if (f.currency !== undefined) where.push(`p.currency = ${params.add(f.currency)}`);
  if (f.jobId !== undefined) where.push(`p.job_id = ${params.add(f.jobId)}::uuid`);
  if (f.clientId !== undefined) where.push(`p.client_id = ${params.add(f.clientId)}`);
  if (f.minerId !== undefined) where.push(`p.miner_id = ${params.add(f.minerId)}`);
  if (f.createdFrom) where.push(`p.created_at >= ${params.add(f.createdFrom.text)}::timestamptz`);
  if (f.createdTo) where.push(`p.created_at < ${params.add(f.createdTo.text)}::timestamptz`);
  // Settlement time: released_at or refunded_at (never both); the expression of job_payments_settled_idx.
  if (f.settledFrom)
    where.push(`COALESCE(p.released_at, p.refunded_at) >= ${params.add(f.settledFrom.text)}::timestamptz`);
  if (f.settledTo) where.push(`COALESCE(p.released_at, p.refunded_at) < ${params.add(f.settledTo.text)}::timestamptz`);
  if (f.amountMin !== undefined) where.push(`p.amount >= ${params.add(f.amountMin)}::numeric`);
  if (f.amountMax !== undefined) where.push(`p.amount <= ${params.add(f.amountMax)}::numeric`);
  return where;
}

/** CSV exports running at once on one instance: each holds a database connection of its own. */
const CONCURRENT_CSV_EXPORTS = 4;

const whereOf = (conditions: string[]) => (conditions.length ? `WHERE ${conditions.join(' AND ')}` : '');

/**
 * Every read statement of the payment history, and the rollup's fold. Reads run as single
 * statements on the shared pool; the NDJSON export holds one connection of it in a
 * read-only REPEATABLE READ transaction for as long as its stream runs (one consistent
 * snapshot, read in keyset pages); the CSV export is one COPY on a connection of its own,
 * in a worker thread (`CsvExport`).
 */
@Injectable()
export class PaymentHistoryRepository implements OnModuleInit {
  private pool: Pool;
  private readonly csvExports = new Semaphore(CONCURRENT_CSV_EXPORTS);

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly dataSource: DataSource,
  ) {}

  onModuleInit(): void {
    // TypeORM's PostgresDriver keeps its pg.Pool as `master` (as Transactions does).
    this.pool = (this.dataSource.driver as unknown as { master: Pool }).master;
  }

  async findPayment(paymentId: string): Promise<JobPayment | undefined> {
    return this.tx.sql.one<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = $1`, [paymentId]);
  }

  /**
   * A page of payments, newest first by (created_at, payment_id), after `cursor`. A status
   * list becomes one index range per status merged here, so each reads about `limit` rows.
   */
  async listPayments(f: PaymentFilters, limit: number, cursor?: KeysetCursor): Promise<PagedPayment[]> {
    if (f.statuses?.length === 0) return [];
    const params = new Params();
    const common = filterConditions(f, params);
    if (cursor)
      common.push(
        `(p.created_at, p.payment_id) < (${params.add(cursor.at)}::timestamptz, ${params.add(cursor.id)}::uuid)`,
      );
    const take = params.add(limit);
    const branch = (conditions: string[]) =>
      `SELECT p.*, ${ISO_US('p.created_at')} AS cursor_at FROM job_payments p ${whereOf(conditions)}
        ORDER BY p.created_at DESC, p.payment_id DESC LIMIT ${take}`;
    if (!f.statuses || f.statuses.length === 1) {
      const conditions = f.statuses ? [...common, `p.status = ${params.add(f.statuses[0])}`] : common;
      return this.tx.sql.rows<PagedPayment>(branch(conditions), params.values);
    }
    const branches = f.statuses.map((s) => `(${branch([...common, `p.status = ${params.add(s)}`])})`);
    return this.tx.sql.rows<PagedPayment>(
      `SELECT * FROM (${branches.join(' UNION ALL ')}) u ORDER BY created_at DESC, payment_id DESC LIMIT ${take}`,
      params.values,
    );
  }

  /** Payments released to `minerId`, newest release first, after `cursor`. */
  async listPayouts(minerId: string, limit: number, cursor?: KeysetCursor): Promise<PagedPayment[]> {
    const params = new Params();
    const where = [`p.status = 'released'`, `p.miner_id = ${params.add(minerId)}`];
    if (cursor)
      where.push(
        `(p.released_at, p.payment_id) < (${params.add(cursor.at)}::timestamptz, ${params.add(cursor.id)}::uuid)`,
      );
    return this.tx.sql.rows<PagedPayment>(
      `SELECT p.*, ${ISO_US('p.released_at')} AS cursor_at FROM job_payments p ${whereOf(where)}
        ORDER BY p.released_at DESC, p.payment_id DESC LIMIT ${params.add(limit)}`,
      params.values,
    );
  }

  /** Summary from the rollup: its folded rows plus the deltas not folded yet. */
  async summaryFromRollup(plan: RollupPlan, f: PaymentFilters, groupBy: ReadonlySet<GroupKey>): Promise<SummaryRow[]> {
    if (f.statuses?.length === 0) return [];
    const params = new Params();
    const where = [`scope = ${params.add(plan.scope)}`];
    if (plan.scopeId !== undefined) where.push(`scope_id = ${params.add(plan.scopeId)}`);
    if (plan.fromDay) where.push(`day >= ${params.add(plan.fromDay)}::date`);
    if (plan.toDay) where.push(`day < ${params.add(plan.toDay)}::date`);
    if (f.currency !== undefined) where.push(`currency = ${params.add(f.currency)}`);
    if (f.statuses) where.push(`status = ANY(${params.add(f.statuses)}::varchar[])`);
    const keys = groupColumns(groupBy, {
      status: 'status',
      day: `to_char(day, 'YYYY-MM-DD')`,
      month: `to_char(day, 'YYYY-MM')`,
      // The miner scope keeps payments without a miner under ''.
      client_id: `scope_id`,
      miner_id: `NULLIF(scope_id, '')`,
    });
    const source = `SELECT scope_id, day, currency, status, count, amount FROM payment_rollup ${whereOf(where)}
                    UNION ALL
                    SELECT scope_id, day, currency, status, count, amount FROM payment_rollup_delta ${whereOf(where)}`;
    return this.tx.sql.rows<SummaryRow>(
      `SELECT ${keys.select}, sum(count)::text AS count, sum(amount)::text AS amount
         FROM (${source}) r
        GROUP BY ${keys.group}
       HAVING sum(count) <> 0
        ORDER BY ${keys.group}`,
      params.values,
    );
  }

  /** Summary summed from the payments themselves (filters the rollup does not have). */
  async summaryFromPayments(f: PaymentFilters, groupBy: ReadonlySet<GroupKey>): Promise<SummaryRow[]> {
    if (f.statuses?.length === 0) return [];
    const params = new Params();
    const where = filterConditions(f, params);
    if (f.statuses) where.push(`p.status = ANY(${params.add(f.statuses)}::varchar[])`);
    const keys = groupColumns(groupBy, {
      status: 'p.status',
      day: `to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
      month: `to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM')`,
      client_id: 'p.client_id',
      miner_id: 'p.miner_id',
    });
    return this.tx.sql.rows<SummaryRow>(
      `SELECT ${keys.select}, count(*)::text AS count, sum(p.amount)::text AS amount
         FROM job_payments p ${whereOf(where)}
        GROUP BY ${keys.group}
        ORDER BY ${keys.group}`,
      params.values,
    );
  }

  /**
   * The export's rows in batches of `batchSize` lines, newest first, read as keyset pages
   * (the list's order and indexes, each page where the last ended) inside one read-only
   * REPEATABLE READ transaction: one consistent snapshot, constant memory whatever the row
   * count, and no sort of the whole result (a server-side cursor over ORDER BY sorted every
   * row on disk in one process first: three times slower on 200k rows). Each batch is its
   * lines joined (see NDJSON_LINE). Returning (or throwing into) the generator ends the
   * transaction and releases the connection.
   */
  async *exportNdjsonBatches(
    f: PaymentFilters,
    scales: ReadonlyMap<string, number>,
    batchSize: number,
  ): AsyncGenerator<string> {
    if (f.statuses?.length === 0) return;
    const page = (after?: KeysetCursor) => {
      const params = new Params();
      const where = filterConditions(f, params);
      if (f.statuses) where.push(`p.status = ANY(${params.add(f.statuses)}::varchar[])`);
      if (after)
        where.push(
          `(p.created_at, p.payment_id) < (${params.add(after.at)}::timestamptz, ${params.add(after.id)}::uuid)`,
        );
      const codes = params.add([...scales.keys()]);
      const digits = params.add([...scales.values()]);
      // Named: every page after the first has the same text, so PostgreSQL plans it once per connection.
      return prepared(
        `SELECT ${NDJSON_LINE} AS line, p.created_at::text AS at, p.payment_id::text AS id
                 FROM job_payments p
                 LEFT JOIN unnest(${codes}::varchar[], ${digits}::int[]) AS sc(code, scale) ON sc.code = p.currency
                 ${whereOf(where)}
                ORDER BY p.created_at DESC, p.payment_id DESC
                LIMIT ${params.add(batchSize)}`,
        params.values,
      );
    };
    const client: PoolClient = await this.pool.connect();
    let broken: Error | undefined;
    let committed = false;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      let after: KeysetCursor | undefined;
      for (;;) {
        const { rows } = await client.query<[string, string, string]>({ ...page(after), rowMode: 'array' });
        if (rows.length > 0) yield rows.map((row) => row[0]).join('');
        if (rows.length < batchSize) break;
        const last = rows[rows.length - 1];
        // The exact timestamp as PostgreSQL prints it (any zone, microseconds): it only goes back into the next page.
        after = { at: last[1], id: last[2] };
      }
      await client.query('COMMIT');
      committed = true;
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      // Early return (the consumer went away) or an error: end the transaction before the connection goes back.
      if (broken) client.release(broken);
      else if (committed) client.release();
      else {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
      }
    }
  }

  /**
   * The CSV export (see `exportCopySql`), read by a worker thread on a connection of its
   * own (`CsvExport`), at most `CONCURRENT_CSV_EXPORTS` at once on this instance (later
   * ones wait their turn); the API's pool is not used. One statement is one snapshot.
   * Resolves once the first bytes have arrived.
   */
  async exportCsv(f: PaymentFilters, scales: ReadonlyMap<string, number>): Promise<CsvExport> {
    const sql = exportCopySql(f, scales);
    const release = await this.csvExports.acquire();
    try {
      // The export reads rows in an index's (created_at, payment_id) order: left to costs,
      // PostgreSQL may sort the whole result in temporary files before the first byte (it
      // did for a server-side cursor over this ORDER BY on the bench's rows, whose
      // created_at is scattered over the heap). A job_id export (a handful of rows) keeps
      // the planner's choice.
      const csv = await CsvExport.start(this.config.databaseUrl as string, sql, f.jobId === undefined);
      void csv.exited.then(release);
      return csv;
    } catch (error) {
      release();
      throw error;
    }
  }

  /**
   * Events of finished transactions only, in (tx, event_id) order, after `cursor`, below
   * the horizon `FEED_HORIZON`: every transaction id below it has committed or aborted as
   * of this statement's snapshot (or belongs to another database, so wrote none of these
   * events), and no transaction can ever get an id below it, so an event not served yet
   * always sorts after the cursor.
   */
  async feed(
    limit: number,
    cursor: FeedCursor | undefined,
    clientId: string | undefined,
    types: { statuses: PaymentStatus[]; sameStatusReasons: string[] } | undefined,
  ): Promise<FeedEvent[]> {
    const params = new Params();
    const where = [`e.tx < (${FEED_HORIZON})`];
    if (cursor)
      where.push(`(e.tx, e.event_id) > (${params.add(cursor.tx)}::xid8, ${params.add(cursor.eventId)}::bigint)`);
    if (clientId !== undefined) where.push(`p.client_id = ${params.add(clientId)}`);
    if (types) {
      // A status change to one of `statuses`, or an event that keeps the status with one of the reasons.
      where.push(
        `((e.to_status = ANY(${params.add(types.statuses)}::varchar[]) AND e.from_status IS DISTINCT FROM e.to_status)
          OR (e.from_status = e.to_status AND e.reason = ANY(${params.add(types.sameStatusReasons)}::varchar[])))`,
      );
    }
    return this.tx.sql.rows<FeedEvent>(
      `SELECT e.event_id::text AS event_id, e.tx::text AS tx, e.payment_id, p.job_id, e.from_status, e.to_status,
              e.reason, e.actor, e.created_at
         FROM payment_events e JOIN job_payments p ON p.payment_id = e.payment_id
        ${whereOf(where)}
        ORDER BY e.tx, e.event_id
        LIMIT ${params.add(limit)}`,
      params.values,
    );
  }

  /**
   * Folds the rollup's deltas into one row per key and drops keys that cancelled out.
   * Writers only ever insert deltas, so folding never blocks them; the deletion and the
   * upsert commit together, so a reader sees every delta exactly once either way. One
   * fold at a time across instances (an advisory lock); returns the deltas folded.
   */
  async foldRollup(): Promise<number> {
    return this.tx.run(async (sql) => {
      const lock = await sql.one<{ locked: boolean }>(ROLLUP_FOLD_LOCK_SQL);
      if (!lock?.locked) return 0;
      const folded = await sql.one<{ deltas: string }>(ROLLUP_FOLD_SQL);
      await sql.rows(ROLLUP_PRUNE_SQL);
      return Number(folded?.deltas ?? 0);
    }, 1);
  }
}

/**
 * The feed's visibility horizon: the snapshot's oldest running transaction id — except
 * those shown running in *another* database (they cannot have written our events), so a
 * long transaction elsewhere on the server (the wallet daemon's database, another
 * application) does not hold the feed back — or, with none, the snapshot's xmax. Ids
 * below xmax not listed as running have finished. A running id whose backend cannot be
 * placed (gone meanwhile, hidden from this role) counts as ours: that only holds back.
 */
export const FEED_HORIZON = `
  SELECT LEAST(pg_snapshot_xmax(snap.s),
               (SELECT min(x) FROM pg_snapshot_xip(snap.s) AS x
                 WHERE x::xid NOT IN (SELECT backend_xid FROM pg_stat_activity
                                       WHERE backend_xid IS NOT NULL AND datname IS NOT NULL
                                         AND datname <> current_database())))
    FROM (SELECT pg_current_snapshot() AS s) AS snap`;

/** One fold at a time across instances; the key is arbitrary but fixed, like the migration lock's. */
export const ROLLUP_FOLD_LOCK_SQL = `SELECT pg_try_advisory_xact_lock(724031013) AS locked`;

/** Moves every visible delta into its key's folded row, in one statement; returns how many were folded. */
export const ROLLUP_FOLD_SQL = `
  WITH moved AS (DELETE FROM payment_rollup_delta RETURNING *),
       summed AS (
         SELECT scope, scope_id, day, currency, status, sum(count) AS count, sum(amount) AS amount, count(*) AS deltas
           FROM moved GROUP BY scope, scope_id, day, currency, status),
       upserted AS (
         INSERT INTO payment_rollup AS r (scope, scope_id, day, currency, status, count, amount)
         SELECT scope, scope_id, day, currency, status, count, amount FROM summed
         ON CONFLICT (scope, scope_id, day, currency, status)
         DO UPDATE SET count = r.count + EXCLUDED.count, amount = r.amount + EXCLUDED.amount)
  SELECT COALESCE(sum(deltas), 0)::text AS deltas FROM summed`;

/** Keys whose deltas cancelled out (a payment moved on from `pending`…) answer nothing: drop them. */
export const ROLLUP_PRUNE_SQL = `DELETE FROM payment_rollup WHERE count = 0 AND amount = 0`;

/** SELECT and GROUP BY lists for the grouped keys, `currency` first. */
function groupColumns(
  groupBy: ReadonlySet<GroupKey>,
  expressions: Record<Exclude<GroupKey, 'currency'>, string>,
): { select: string; group: string } {
  const names: string[] = ['currency'];
  const select: string[] = ['currency AS currency'];
  for (const key of ['status', 'day', 'month', 'client_id', 'miner_id'] as const) {
    if (!groupBy.has(key)) continue;
    names.push(key);
    select.push(`${expressions[key]} AS ${key}`);
  }
  return { select: select.join(', '), group: names.map((_, i) => String(i + 1)).join(', ') };
}
