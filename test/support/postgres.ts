import { Client } from 'pg';

/**
 * Low-level PostgreSQL helpers shared by global setup, global teardown and the
 * per-file database factory. Every database a test run creates is named
 * `<run prefix>_…`, where the prefix is `<base database>_r<jest parent pid>`: runs
 * sharing one server (two engineers, CI) never touch each other's databases, and
 * teardown drops exactly its own.
 */

/** Environment variables global setup hands to the test workers. */
export const TEST_ENV = {
  /** URL of a database on the test server to run CREATE/DROP DATABASE from. */
  adminUrl: 'TEST_PG_ADMIN_URL',
  /** Name of the migrated template database of this run. */
  templateDb: 'TEST_TEMPLATE_DB',
  /** Name prefix of every database this run creates. */
  dbPrefix: 'TEST_DB_PREFIX',
} as const;

/** PostgreSQL silently truncates longer identifiers, which could make two names collide. */
const MAX_IDENTIFIER_LENGTH = 63;

export function databaseNameOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}

export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}

/** The safety net of the whole suite: tests drop databases, so never point them at a real one. */
export function assertTestDatabaseName(name: string): void {
  if (!name.toLowerCase().includes('test')) {
    throw new Error(`Refusing to run tests against database "${name}": its name must contain "test".`);
  }
  if (name.length > MAX_IDENTIFIER_LENGTH) {
    throw new Error(`Test database name "${name}" is longer than ${MAX_IDENTIFIER_LENGTH} characters.`);
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Escapes `_` and `%` so a name prefix can be used in LIKE. */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\_%]/g, (c) => `\\${c}`)}%`;
}

export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, application_name: 'coordinator-tests' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops a test database, disconnecting whoever still uses it. */
export async function dropDatabase(client: Client, name: string): Promise<void> {
  assertTestDatabaseName(name);
  await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

export async function createDatabase(client: Client, name: string, template?: string): Promise<void> {
  assertTestDatabaseName(name);
  const from = template ? ` TEMPLATE ${quoteIdent(template)}` : '';
  await client.query(`CREATE DATABASE ${quoteIdent(name)}${from}`);
}

export async function databasesWithPrefix(client: Client, prefix: string): Promise<string[]> {
  const { rows } = await client.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname`,
    [likePrefix(prefix)],
  );
  return rows.map((r) => r.datname);
}

/** The value of a `TEST_ENV` variable, with a hint when global setup did not run. */
export function requiredTestEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run e2e specs through jest's e2e project (its global setup sets it).`);
  }
  return value;
}
