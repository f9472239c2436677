// Owns the payment_rollup and payment_rollup_delta tables; reads job_payments, job and payment_events (never writes them).
import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Pool, PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { Transactions } from '../database/transactions';
import type { JobPayment, PaymentEvent, PaymentStatus } from '../payments/job-payment.entity';
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

/**
 * The export's columns, in the documented CSV order (the order of `PaymentView`), each
 * formatted by PostgreSQL exactly as `toPaymentView` formats it in JS: amounts at the
 * currency's scale, timestamps ISO-8601 UTC with milliseconds. No row is parsed in JS.
 */
export const EXPORT_COLUMNS = [
  'payment_id',
  'job_id',
  'client_id',
  'amount',
  'currency',
  'status',
  'payment_method',
  'escrow_id',
  'escrow_address',
  'payer_address',
  'refund_address',
  'payee_address',
  'miner_id',
  'provider_id',
  'released_amount',
  'refunded_amount',
  'transaction_hash',
  'refund_transaction_hash',
  'created_at',
  'updated_at',
  'escrowed_at',
  'released_at',
  'refunded_at',
  'expires_at',
  'failure_reason',
  'settle_reason',
] as const;

const ISO_MS = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const ISO_US = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
const AMOUNT = (expression: string) => `round(${expression}, COALESCE(sc.scale, 8))::text`;

const EXPORT_SELECT = `
  p.payment_id::text, p.job_id::text, p.client_id, ${AMOUNT('p.amount')} AS amount, p.currency, p.status,
  p.payment_method, p.escrow_id, p.escrow_address, p.payer_address, p.refund_address, p.payee_address, p.miner_id,
  'local' AS provider_id,
  CASE p.status WHEN 'released' THEN ${AMOUNT('p.amount')} WHEN 'refunded' THEN ${AMOUNT('0')} END AS released_amount,
  CASE p.status WHEN 'refunded' THEN ${AMOUNT('p.amount')} WHEN 'released' THEN ${AMOUNT('0')} END AS refunded_amount,
  p.transaction_hash, p.refund_transaction_hash,
  ${ISO_MS('p.created_at')} AS created_at, ${ISO_MS('p.updated_at')} AS updated_at,
  ${ISO_MS('p.escrowed_at')} AS escrowed_at, ${ISO_MS('p.released_at')} AS released_at,
  ${ISO_MS('p.refunded_at')} AS refunded_at, ${ISO_MS('p.expires_at')} AS expires_at,
  p.failure_reason, p.settle_reason`;

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

const whereOf = (conditions: string[]) => (conditions.length ? `WHERE ${conditions.join(' AND ')}` : '');

/**
 * Every read statement of the payment history, and the rollup's fold. Reads run as single
 * statements on the shared pool; the export holds one connection of it in a read-only
 * REPEATABLE READ transaction for as long as its stream runs (one consistent snapshot,
 * rows fetched in batches from a server-side cursor).
 */
@Injectable()
export class PaymentHistoryRepository implements OnModuleInit {
  private pool: Pool;

  constructor(
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
   * The export's rows in batches, newest first, from a server-side cursor in one read-only
   * REPEATABLE READ transaction: constant memory whatever the row count, one consistent
   * snapshot. Rows are arrays in `EXPORT_COLUMNS` order. Returning (or throwing into) the
   * generator rolls the transaction back and releases the connection.
   */
  async *exportBatches(
    f: PaymentFilters,
    scales: ReadonlyMap<string, number>,
    batchSize: number,
  ): AsyncGenerator<(string | null)[][]> {
    if (f.statuses?.length === 0) return;
    const params = new Params();
    const where = filterConditions(f, params);
    if (f.statuses) where.push(`p.status = ANY(${params.add(f.statuses)}::varchar[])`);
    const codes = params.add([...scales.keys()]);
    const digits = params.add([...scales.values()]);
    const client: PoolClient = await this.pool.connect();
    let broken: Error | undefined;
    let committed = false;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await client.query({
        text: `DECLARE payment_export NO SCROLL CURSOR FOR
               SELECT ${EXPORT_SELECT}
                 FROM job_payments p
                 LEFT JOIN unnest(${codes}::varchar[], ${digits}::int[]) AS sc(code, scale) ON sc.code = p.currency
                 ${whereOf(where)}
                ORDER BY p.created_at DESC, p.payment_id DESC`,
        values: params.values,
      });
      for (;;) {
        const { rows } = await client.query<(string | null)[]>({
          text: `FETCH ${Math.trunc(batchSize)} FROM payment_export`,
          rowMode: 'array',
        });
        if (rows.length > 0) yield rows;
        if (rows.length < batchSize) break;
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
   * Events of finished transactions only, in (tx, event_id) order, after `cursor`. Every
   * transaction id below the snapshot's xmin has committed or aborted, and no transaction
   * can ever get an id below it, so an event not served yet always sorts after the cursor.
   */
  async feed(
    limit: number,
    cursor: FeedCursor | undefined,
    clientId: string | undefined,
    statuses: PaymentStatus[] | undefined,
  ): Promise<FeedEvent[]> {
    const params = new Params();
    const where = [`e.tx < pg_snapshot_xmin(pg_current_snapshot())`];
    if (cursor)
      where.push(`(e.tx, e.event_id) > (${params.add(cursor.tx)}::xid8, ${params.add(cursor.eventId)}::bigint)`);
    if (clientId !== undefined) where.push(`p.client_id = ${params.add(clientId)}`);
    if (statuses) where.push(`e.to_status = ANY(${params.add(statuses)}::varchar[])`);
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
