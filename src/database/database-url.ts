/**
 * `url` pointing at another database on the same server: only the path's database name
 * changes; credentials, host, port and the query (e.g. `?host=<socket directory>` of the
 * embedded server) are kept.
 */
export function withDatabaseName(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** The database name in the path of `url`. */
export function databaseNameOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}
