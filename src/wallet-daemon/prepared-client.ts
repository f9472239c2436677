import { Client } from 'pg';
import { prepared } from '../database/prepared';

type Query = (...args: unknown[]) => unknown;

/**
 * The daemon pool's client: a statement sent with parameters runs as a named prepared
 * statement, so each connection parses and plans each statement once and then only binds
 * and executes it, as the coordinator's statements do (`src/database/prepared.ts`).
 * Statements without parameters (BEGIN, COMMIT, the schema) keep the simple protocol,
 * which also allows several statements in one text.
 */
export class PreparedStatementClient extends Client {
  // pg's query() has many overloads; all of them pass through unchanged but (text, values[, callback]).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override query(...args: unknown[]): any {
    const query = super.query.bind(this) as Query;
    const [text, values, ...rest] = args;
    if (typeof text === 'string' && Array.isArray(values)) return query(prepared(text, values), ...rest);
    return query(...args);
  }
}
