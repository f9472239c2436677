import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createApp } from './app.setup';
import { ConfigError, DEMO_CLIENT_WALLET, DEMO_KEYS, loadConfig } from './config/app-config';
import { withDatabaseName } from './database/database-url';
import { ensureDatabase, startEmbeddedPostgres } from './database/embedded-postgres';
import { Money } from './common/money';
import { spawnWalletDaemon } from './wallet-daemon/spawn';

const log = pino({ level: process.env.LOG_LEVEL ?? 'info' });

/**
 * Zero-setup start: with DATABASE_URL unset an embedded PostgreSQL runs under DATA_DIR,
 * and with WALLET_DAEMON_URL unset the local wallet daemon runs next to the coordinator
 * (its own process and database) with the demo client's wallet funded.
 */
async function bootstrap(): Promise<void> {
  let config = loadConfig(process.env);
  const stops: (() => Promise<void>)[] = [];
  let app: Awaited<ReturnType<typeof createApp>> | undefined = undefined;

  // SIGINT (Ctrl-C) and SIGTERM stop the service in order: the app first (running requests
  // finish, background work stops, the pool closes: `app.close()` runs every shutdown hook),
  // then the local daemon, then the embedded server, which run in process groups of their
  // own so that a terminal's Ctrl-C reaches only this process. Listening from the start, a
  // stop during start-up stops what has started so far. These listeners stand in for
  // Nest's `enableShutdownHooks`, which re-raises the signal once the app has closed and so
  // ended the process before the daemon and the database were stopped. Signals during the
  // stop are ignored: under `npm start` each Ctrl-C arrives twice (from the terminal and
  // forwarded by npm), and the stop is bounded anyway (20 s for running requests, 5 s for
  // the daemon, then a fast shutdown of the server).
  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) {
      log.info({ signal }, 'already stopping');
      return;
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    await app?.close();
    for (const stop of stops) await stop().catch((error: unknown) => log.error({ err: error }, 'stop failed'));
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', (signal) => void shutdown(signal));
  process.on('SIGTERM', (signal) => void shutdown(signal));

  if (!config.databaseUrl) {
    const started = Date.now();
    log.info({ data_dir: config.dataDir }, 'DATABASE_URL unset: starting embedded PostgreSQL');
    const db = await startEmbeddedPostgres(config.dataDir, 'coordinator');
    stops.push(() => db.stop());
    process.env.DATABASE_URL = db.url;
    // Same server, its own database: the daemon's books stay apart from the coordinator's.
    process.env.WALLET_DATABASE_URL ??= withDatabaseName(db.url, 'wallet_daemon');
    await ensureDatabase(db.adminUrl, 'wallet_daemon');
    log.info({ ms: Date.now() - started }, 'embedded PostgreSQL ready');
  }

  if (!config.walletDaemonUrl) {
    if (!process.env.WALLET_DATABASE_URL)
      throw new ConfigError('WALLET_DATABASE_URL: needed to start the local wallet daemon when DATABASE_URL is set');
    const token = process.env.WALLET_DAEMON_TOKEN || localToken(config.dataDir);
    const daemon = await spawnWalletDaemon({
      databaseUrl: process.env.WALLET_DATABASE_URL,
      token,
      port: config.walletDaemonPort,
      seed: config.walletSeed,
      dataDir: config.dataDir,
    });
    stops.unshift(() => daemon.stop());
    process.env.WALLET_DAEMON_URL = daemon.url;
    process.env.WALLET_DAEMON_TOKEN = token;
    log.info({ url: daemon.url }, 'local wallet daemon started');
    if (config.demoKeys) await fundDemoClient(daemon.url, token);
  }
  config = loadConfig(process.env);

  app = await createApp();
  if (stopping) return; // a stop signal came during start-up: shutdown() closes the app
  await app.listen({ port: config.port, host: '0.0.0.0' });
  const url = `http://127.0.0.1:${config.port}`;
  log.info({ url, docs: `${url}/docs` }, 'coordinator listening');
  if (config.demoKeys) {
    log.info(
      { client: DEMO_KEYS.client, miner: DEMO_KEYS.miner, admin: DEMO_KEYS.admin, client_wallet: DEMO_CLIENT_WALLET },
      'API_KEYS unset: demo keys in use (development only)',
    );
  }
}

/** The token between coordinator and local daemon, generated once and kept under DATA_DIR. */
function localToken(dataDir: string): string {
  const file = join(dataDir, 'wallet-daemon-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(24).toString('hex');
  writeFileSync(file, token, { mode: 0o600 });
  return token;
}

/** Tops the demo client's wallet up to at least 1 BTC so the walk-through works out of the box. */
async function fundDemoClient(url: string, token: string): Promise<void> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const account = (await (
    await fetch(`${url}/api/v1/accounts/${DEMO_CLIENT_WALLET}?currency=BTC`, { headers })
  ).json()) as { balance?: string };
  if (new Money(account.balance ?? '0').gte(1)) return;
  await fetch(`${url}/api/v1/faucet`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ address: DEMO_CLIENT_WALLET, amount: '1', currency: 'BTC' }),
  });
  log.info({ address: DEMO_CLIENT_WALLET, amount: '1', currency: 'BTC' }, 'demo client wallet funded');
}

bootstrap().catch((error) => {
  if (error instanceof ConfigError) {
    log.fatal(`configuration error: ${error.message}`);
  } else {
    log.fatal({ err: error }, 'failed to start');
  }
  process.exit(1);
});
