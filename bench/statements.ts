import { Client } from 'pg';
import { progress } from './util';

/** One row of pg_stat_statements: where PostgreSQL's time went, by statement. */
export interface StatementStat {
  calls: number;
  total_ms: number;
  mean_ms: number;
  rows: number;
  database: string;
  query: string;
}

/**
 * `--statements`: pg_stat_statements on both bench databases, reset before the load.
 * The embedded server preloads it when asked; on a DATABASE_URL server it works only
 * if the operator preloaded it, otherwise the option is skipped with a message.
 * Times include waiting for row locks, so a hot row shows up as a slow statement.
 */
export async function enableStatements(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT pg_stat_statements_reset()');
    return true;
  } catch (error) {
    progress(`--statements skipped: pg_stat_statements is not available on this server (${(error as Error).message})`);
    return false;
  } finally {
    await client.end();
  }
}

/** The statements of the bench databases with the most total time. */
export async function topStatements(url: string, databases: string[], limit = 25): Promise<StatementStat[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<StatementStat>(
      `SELECT s.calls::int, round(s.total_exec_time::numeric, 1)::float AS total_ms,
              round((s.total_exec_time / s.calls)::numeric, 3)::float AS mean_ms, s.rows::int, d.datname AS database,
              left(regexp_replace(s.query, '\\s+', ' ', 'g'), 140) AS query
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = ANY($1::text[])
        ORDER BY s.total_exec_time DESC LIMIT $2`,
      [databases, limit],
    );
    return rows;
  } finally {
    await client.end();
  }
}

export function renderStatements(stats: StatementStat[]): string {
  const lines = [
    'Statements by total time (pg_stat_statements; includes lock waits; trigger statements are listed and also counted in their callers):',
    'calls\ttotal ms\tmean ms\trows\tdatabase\tstatement',
  ];
  for (const s of stats)
    lines.push(
      `${s.calls}\t${s.total_ms}\t${s.mean_ms}\t${s.rows}\t${s.database.endsWith('_wallet') ? 'daemon' : 'coordinator'}\t${s.query}`,
    );
  return lines.join('\n');
}
