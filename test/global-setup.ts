import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { Client } from 'pg';
import { processAlive } from '../src/common/process-alive';
import { startEmbeddedPostgres } from '../src/database/embedded-postgres';
import { migrateDatabase } from '../src/database/migrations';
import { spawnWalletDaemon } from '../src/wallet-daemon/spawn';
import globalTeardown from './global-teardown';
import { DAEMON_LOG_FILE, TEST_WALLET_SEED } from './support/daemon';
import { infraState } from './support/infra-state';
import {
  assertTestDatabaseName,
  createDatabase,
  databaseNameOf,
  databasesWithPrefix,
  dropDatabase,
  quoteIdent,
  TEST_ENV,
  withClient,
  withDatabaseName,
} from './support/postgres';

const EMBEDDED_DATA_DIR = resolve(__dirname, '../.data/test-pg');
const EMBEDDED_DATABASE = 'coordinator_test';

/**
 * Runs once in jest's parent process before the e2e specs: picks the PostgreSQL server,
 * migrates a template database once (each test file copies it), and starts one local
 * wallet daemon. What it puts on `process.env` is inherited by the test workers.
 */
export default async function globalSetup(): Promise<void> {
  process.env.NODE_ENV = 'test';
  process.env.TZ = 'UTC';
  // Quiet apps unless the developer asks (`LOG_LEVEL=debug npm run test:e2e`); set here
  // because modules may read it at import time, before startTestApp runs.
  process.env.LOG_LEVEL ||= 'silent';
  const state = infraState();
  try {
    const server = await choosePostgres();
    const base = databaseNameOf(server.url);
    // The jest parent's pid keeps concurrent runs on one server apart.
    const prefix = `${base}_r${process.pid}`;
    state.adminUrl = server.adminUrl;
    state.dbPrefix = prefix;

    const template = `${prefix}_tpl`;
    const wallet = `${prefix}_wallet`;
    await timed(`template database ${template} migrated`, () =>
      withClient(server.adminUrl, async (admin) => {
        await dropLeftoversOfDeadRuns(admin, base);
        await dropDatabase(admin, template);
        await createDatabase(admin, template);
        await migrateDatabase(withDatabaseName(server.adminUrl, template));
        // CREATE DATABASE … TEMPLATE fails while anyone is connected to the template.
        await admin.query(`ALTER DATABASE ${quoteIdent(template)} WITH ALLOW_CONNECTIONS false`);
        await dropDatabase(admin, wallet);
        await createDatabase(admin, wallet);
      }),
    );

    const token = randomBytes(16).toString('hex');
    const daemonStart = Date.now();
    const daemon = await spawnWalletDaemon({
      databaseUrl: withDatabaseName(server.adminUrl, wallet),
      token,
      port: 0,
      seed: TEST_WALLET_SEED,
      env: { LOG_LEVEL: 'error' },
      logFile: DAEMON_LOG_FILE,
    });
    progress(`wallet daemon at ${daemon.url} started in ${seconds(daemonStart)}`);
    state.stopDaemon = () => daemon.stop();

    Object.assign(process.env, {
      [TEST_ENV.adminUrl]: server.adminUrl,
      [TEST_ENV.templateDb]: template,
      [TEST_ENV.dbPrefix]: prefix,
      WALLET_DAEMON_URL: daemon.url,
      WALLET_DAEMON_TOKEN: token,
    });
  } catch (error) {
    // Jest skips global teardown when setup fails; do not leave servers running.
    await globalTeardown().catch(() => undefined);
    throw error;
  }
}

interface ChosenServer {
  /** URL of the database whose name the run's databases derive from (contains "test"). */
  url: string;
  /** URL to run CREATE/DROP DATABASE from. */
  adminUrl: string;
}

async function choosePostgres(): Promise<ChosenServer> {
  const configured = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (configured) {
    assertTestDatabaseName(databaseNameOf(configured));
    const { host } = new URL(configured);
    progress(`PostgreSQL at ${host}, database ${databaseNameOf(configured)}`);
    // The given database certainly exists and is never dropped, so it serves as the admin connection.
    return { url: configured, adminUrl: configured };
  }

  const log: string[] = [];
  const embedded = await timed(`embedded PostgreSQL started (${EMBEDDED_DATA_DIR})`, () =>
    startEmbeddedPostgres(EMBEDDED_DATA_DIR, EMBEDDED_DATABASE, (line) => log.push(line)).catch((error) => {
      const tail = log.join('').trim().split('\n').slice(-15).join('\n');
      throw new Error(`embedded PostgreSQL did not start${error ? `: ${error}` : ''}\n${tail}`);
    }),
  );
  infraState().stopEmbeddedPostgres = () => embedded.stop();
  return { url: embedded.url, adminUrl: embedded.adminUrl };
}

/**
 * Drops what runs that died without teardown (Ctrl-C) left behind. Their jest pid is in
 * the name; a database still in use (an orphaned daemon) is left alone rather than forced.
 */
async function dropLeftoversOfDeadRuns(admin: Client, base: string): Promise<void> {
  const runPid = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_r(\\d+)_`);
  for (const name of await databasesWithPrefix(admin, `${base}_r`)) {
    const pid = runPid.exec(name)?.[1];
    if (!pid || Number(pid) === process.pid || processAlive(Number(pid))) continue;
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`).catch(() => undefined);
  }
}

async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const began = Date.now();
  const result = await work();
  progress(`${what} in ${seconds(began)}`);
  return result;
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)}s`;
}

function progress(line: string): void {
  process.stdout.write(`[e2e] ${line}\n`);
}
