import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { DataSource } from 'typeorm';
import { prepared } from './prepared';

/** PostgreSQL errors after which the whole transaction can safely run again. */
const RETRYABLE = new Set(['40001' /* serialization_failure */, '40P01' /* deadlock_detected */]);

/** What a unit of work gets: plain SQL with parameters, rows back as column-named objects. */
export interface Sql {
  rows<T extends QueryResultRow = QueryResultRow>(text: string, params?: unknown[]): Promise<T[]>;
  one<T extends QueryResultRow = QueryResultRow>(text: string, params?: unknown[]): Promise<T | undefined>;
  /** Runs after COMMIT (logs, metrics): never for work that rolled back. Immediate outside a transaction. */
  afterCommit(effect: () => void): void;
}

function sqlOn(client: Pool | PoolClient, effects?: (() => void)[]): Sql {
  return {
    rows: async (text, params) => (await client.query(prepared(text, params))).rows,
    one: async (text, params) => (await client.query(prepared(text, params))).rows[0],
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
 */
@Injectable()
export class Transactions implements OnModuleInit {
  private pool: Pool;

  constructor(private readonly dataSource: DataSource) {}

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
        const code = (error as { code?: string }).code;
        if (attempt >= attempts || !code || !RETRYABLE.has(code)) throw error;
      } finally {
        client.release();
      }
    }
  }

  /** Single statements that need no transaction of their own. */
  get sql(): Sql {
    return sqlOn(this.pool);
  }
}
