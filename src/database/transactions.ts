import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { DataSource } from 'typeorm';
import { MetricsService } from '../metrics/metrics.service';
import { prepared } from './prepared';

/** PostgreSQL errors after which the whole transaction can safely run again, by their condition name. */
const RETRYABLE: ReadonlyMap<string, string> = new Map([
  ['40001', 'serialization_failure'],
  ['40P01', 'deadlock_detected'],
]);

/** What a unit of work gets: plain SQL with parameters, rows back as column-named objects. */
export interface Sql {
  rows<T extends QueryResultRow = QueryResultRow>(text: string, params?: unknown[]): Promise<T[]>;
  one<T extends QueryResultRow = QueryResultRow>(text: string, params?: unknown[]): Promise<T | undefined>;
  /** Runs after COMMIT (logs, metrics): never for work that rolled back. Immediate outside a transaction. */
  afterCommit(effect: () => void): void;
}

function sqlOn(client: Pool | PoolClient, effects?: (() => void)[], onError?: (error: unknown) => void): Sql {
  const query = async <T extends QueryResultRow>(text: string, params?: unknown[]) => {
    try {
      return await client.query<T>(prepared(text, params));
    } catch (error) {
      onError?.(error);
      throw error;
    }
  };
  return {
    rows: async <T extends QueryResultRow>(text: string, params?: unknown[]) => (await query<T>(text, params)).rows,
    one: async <T extends QueryResultRow>(text: string, params?: unknown[]) => (await query<T>(text, params)).rows[0],
    afterCommit: (effect) => (effects ? effects.push(effect) : effect()),
  };
}

/**
 * Runs units of work in one READ COMMITTED transaction on TypeORM's own pg pool (one pool,
 * one set of options from ormconfig.ts). Hot paths are hand-written SQL — compare-and-set
 * UPDATEs whose row count decides — rather than entity saves.
 *
 * Lock order: a transaction that touches a job and its payment locks the job row first;
 * PostgreSQL would abort one side of a deadlock anyway, and it is then retried here.
 * Every such abort is logged and counted (`db_transaction_aborts_total`), so a broken
 * lock order shows up instead of hiding behind the retry.
 */
@Injectable()
export class Transactions implements OnModuleInit {
  private readonly logger = new Logger('Transactions');
  /** Errors already counted: a single statement's error may also end the transaction it ran in. */
  private readonly noted = new WeakSet<object>();
  private pool: Pool;

  constructor(
    private readonly dataSource: DataSource,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    // TypeORM's PostgresDriver keeps its pg.Pool as `master`.
    this.pool = (this.dataSource.driver as unknown as { master: Pool }).master;
  }

  async run<T>(work: (sql: Sql) => Promise<T>, attempts = 3): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      const effects: (() => void)[] = [];
      try {
        await client.query('BEGIN');
        const result = await work(sqlOn(client, effects));
        await client.query('COMMIT');
        effects.forEach((effect) => effect());
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        const retryable = this.noteAbort(
          error,
          attempt < attempts
            ? `attempt ${attempt} of ${attempts}, retrying`
            : `attempt ${attempt} of ${attempts}, giving up`,
        );
        if (!retryable || attempt >= attempts) throw error;
      } finally {
        client.release();
      }
    }
  }

  /** Single statements that need no transaction of their own. */
  get sql(): Sql {
    // A single statement is not retried (its caller gets the error), but it is counted.
    return sqlOn(this.pool, undefined, (error) => this.noteAbort(error, 'single statement, not retried'));
  }

  /** Logs and counts a deadlock or serialization failure; true when `error` is one. */
  private noteAbort(error: unknown, outcome: string): boolean {
    const code = (error as { code?: string } | undefined)?.code;
    const reason = code ? RETRYABLE.get(code) : undefined;
    if (!reason) return false;
    if (this.noted.has(error as object)) return true;
    this.noted.add(error as object);
    this.metrics.dbTransactionAborts.inc({ reason });
    this.logger.warn(
      { code, reason, outcome, detail: (error as { detail?: string }).detail },
      `PostgreSQL aborted a transaction: ${reason} (${outcome})`,
    );
    return true;
  }
}
