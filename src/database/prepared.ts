import { createHash } from 'node:crypto';
import type { QueryConfig } from 'pg';

const names = new Map<string, string>();

/**
 * A pg query config that runs as a named prepared statement: each pooled connection
 * parses and plans the text once, then only binds and executes it. The name is a hash
 * of the text, so the same SQL always maps to the same name (pg refuses one name with
 * two texts) and dynamically built SQL simply gets one statement per variant.
 *
 * Measured with pgbench on the create-a-paid-job transaction: about 1.8× the
 * throughput of the simple protocol (README "Performance").
 */
export function prepared(text: string, values?: unknown[]): QueryConfig {
  let name = names.get(text);
  if (name === undefined) {
    name = `s${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    names.set(text, name);
  }
  return { name, text, values };
}
