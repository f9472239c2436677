import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Client, Pool } from 'pg';
import { processAlive } from '../src/common/process-alive';
import { startEmbeddedPostgres } from '../src/database/embedded-postgres';
import { migrateDatabase } from '../src/database/migrations';
import { ensureWalletSchema } from '../src/wallet-daemon/schema';
import { onCleanup, ROOT } from './processes';
import { progress } from './util';

/** shared_buffers of the benchmark's embedded server. */
const EMBEDDED_SHARED_BUFFERS = '1GB';

export interface BenchDatabases {
  /** The coordinator's fresh database. */
  url: string;
  /** The wallet daemon's fresh database (same server). */
  walletUrl: string;
  /** Where CREATE/DROP DATABASE ran from. */
  adminUrl: string;
  server: 'embedded' | 'DATABASE_URL';
  /** e.g. "PostgreSQL 18.x" */
  version: string;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A URL without its password, for printing. */
export function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

/** `name=value,name=value` (BENCH_PG): extra server settings of the embedded PostgreSQL, for experiments. */
export function parseServerSettings(raw: string): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const pair of raw.split(',').filter((p) => p.trim())) {
    const [name, ...value] = pair.split('=');
    if (!/^[a-z_.]+$/.test(name.trim()) || value.length === 0) throw new Error(`BENCH_PG: "${pair}" is not name=value`);
    settings[name.trim()] = value.join('=').trim();
  }
  return settings;
}

/**
 * Two fresh databases, `<name>` for the coordinator and `<name>_wallet` for the daemon, on
 * the server of DATABASE_URL when it is set, else on an embedded PostgreSQL under
 * `.data/bench-pg`. Both are dropped (and the embedded server stopped) at cleanup.
 * `logFile`: where the embedded server's own log goes (its warnings, and the plans of
 * `auto_explain` when BENCH_PG loads it).
 */
export async function prepareDatabases(name: string, statements = false, logFile?: string): Promise<BenchDatabases> {
  const configured = process.env.DATABASE_URL;
  let adminUrl: string;
  let server: BenchDatabases['server'];
  if (configured) {
    adminUrl = configured;
    server = 'DATABASE_URL';
    progress(`PostgreSQL from DATABASE_URL (${redact(configured)}); creating databases ${name}, ${name}_wallet`);
  } else {
    const dataDir = join(ROOT, '.data', 'bench-pg');
    progress(`DATABASE_URL unset: starting embedded PostgreSQL under ${dataDir}`);
    // The server's log to its file; its last lines kept for the error should it not start.
    const log = logFile ? createWriteStream(logFile, { flags: 'a' }) : undefined;
    const logLines: string[] = [];
    const onLogLine = (line: string) => {
      log?.write(line);
      logLines.push(line);
      if (logLines.length > 50) logLines.shift();
    };
    // Sized as a server holding a million payments would be (the default 128 MB is a
    // laptop's): the 1M read figures then measure indexes, not the buffer cache. The
    // read ceilings run on the same server, so ratios are unaffected.
    const settings: Record<string, string> = { shared_buffers: EMBEDDED_SHARED_BUFFERS };
    // --statements: pg_stat_statements must be loaded at server start.
    if (statements)
      Object.assign(settings, { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all' });
    Object.assign(settings, parseServerSettings(process.env.BENCH_PG ?? ''));
    progress(
      `embedded PostgreSQL settings: ${Object.entries(settings)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
    );
    const embedded = await startEmbeddedPostgres(dataDir, 'postgres', onLogLine, settings).catch((error) => {
      throw new Error(
        `embedded PostgreSQL did not start: ${error}\n${logLines.join('').split('\n').slice(-15).join('\n')}`,
      );
    });
    onCleanup('embedded PostgreSQL', () => embedded.stop().finally(() => log?.end()));
    adminUrl = embedded.adminUrl;
    server = 'embedded';
  }

  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  let version: string;
  try {
    version = String((await admin.query(`SELECT current_setting('server_version') AS v`)).rows[0].v);
    await dropLeftovers(admin, server === 'embedded' || isLocal(adminUrl), server === 'embedded');
    await createDatabasePair(admin, adminUrl, name);
  } finally {
    await admin.end();
  }
  progress(`PostgreSQL ${version} (${server}): databases ${name} and ${name}_wallet created`);
  return {
    url: withDatabase(adminUrl, name),
    walletUrl: withDatabase(adminUrl, `${name}_wallet`),
    adminUrl,
    server,
    version,
  };
}

/** `name` and `name`_wallet, created empty (dropped first if a run left them), dropped at clean-up. */
async function createDatabasePair(admin: Client, adminUrl: string, name: string): Promise<void> {
  for (const db of [name, `${name}_wallet`]) await createFreshDatabase(admin, adminUrl, db);
}

async function createFreshDatabase(admin: Client, adminUrl: string, db: string): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS "${db}"`);
  await admin.query(`CREATE DATABASE "${db}"`);
  onCleanup(`drop database ${db}`, () => dropDatabase(adminUrl, db));
}

/** One more empty database `name` on the bench's server, dropped at clean-up; its URL. */
export async function extraDatabase(adminUrl: string, name: string): Promise<string> {
  await asAdmin(adminUrl, (admin) => createFreshDatabase(admin, adminUrl, name));
  return withDatabase(adminUrl, name);
}

async function dropDatabase(adminUrl: string, db: string): Promise<void> {
  // WITH (FORCE) (PostgreSQL 13+) ends sessions a killed process may have left behind.
  await asAdmin(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`));
}

/** `work` on a connection of its own to the admin database, closed after. */
async function asAdmin(adminUrl: string, work: (admin: Client) => Promise<unknown>): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await work(admin);
  } finally {
    await admin.end();
  }
}

/**
 * A coordinator database and a wallet daemon database with the service's schemas and
 * nothing else, dropped at clean-up. The write ceilings run there: writing and then
 * deleting their rows in the measured databases left those tables freshly analyzed as
 * (nearly) empty, and every connection then re-planned its foreign-key checks as
 * sequential scans and kept those plans while the API phases grew the tables (each
 * check 0.1–0.2 ms instead of microseconds, more than doubling PostgreSQL's CPU per
 * paid job).
 */
export async function scratchDatabases(adminUrl: string, name: string): Promise<{ url: string; walletUrl: string }> {
  await asAdmin(adminUrl, (admin) => createDatabasePair(admin, adminUrl, name));
  const url = withDatabase(adminUrl, name);
  const walletUrl = withDatabase(adminUrl, `${name}_wallet`);
  await migrateDatabase(url);
  const wallet = new Pool({ connectionString: walletUrl, max: 1 });
  try {
    await ensureWalletSchema(wallet);
  } finally {
    await wallet.end();
  }
  return { url, walletUrl };
}

/** Reads server settings that matter for interpreting the figures. */
export async function serverSettings(url: string): Promise<Record<string, string>> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const names = [
      'fsync',
      'synchronous_commit',
      'wal_sync_method',
      'shared_buffers',
      'max_connections',
      'full_page_writes',
      'random_page_cost',
    ];
    const { rows } = await client.query(`SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)`, [names]);
    return Object.fromEntries(
      rows.map((r) => [r.name, r.unit && r.unit !== 'ms' ? `${r.setting} (${r.unit})` : String(r.setting)]),
    );
  } finally {
    await client.end();
  }
}

function isLocal(url: string): boolean {
  const host = new URL(url).hostname;
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '[::1]';
}

/**
 * Databases of earlier runs that died before their cleanup (Ctrl-C stops the embedded
 * server before the drops can run). On the embedded server every `bench_…` database is
 * ours; on a DATABASE_URL server only those whose run (pid in the name) is gone, and only
 * when the server is on the same host.
 */
async function dropLeftovers(admin: Client, local: boolean, all: boolean): Promise<void> {
  if (!local) return;
  const { rows } = await admin.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname ~ '^bench_[0-9]{8}_[0-9]{6}_p[0-9]+(_wallet)?$'`,
  );
  for (const { datname } of rows) {
    const pid = Number(/_p(\d+)/.exec(datname)?.[1]);
    if (!all && processAlive(pid)) continue;
    if (pid === process.pid) continue;
    await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => undefined);
    progress(`dropped leftover database ${datname} of an interrupted run`);
  }
}
