import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createApp } from '../../src/app.setup';
import { createIsolatedDatabase } from './database';
import { sharedDaemon, WalletDaemonHelper } from './daemon';

/** The callers every test app knows, by the name tests use for them. */
export type KeyName = 'client' | 'client2' | 'miner' | 'miner2' | 'admin';

export const PRINCIPALS: Readonly<Record<KeyName, string>> = {
  client: 'client-1',
  client2: 'client-2',
  miner: 'miner-1',
  miner2: 'miner-2',
  admin: 'admin-1',
};

/** Each client wallet's faucet balance at start. */
export const CLIENT_WALLET_FUNDS = '10';

export interface TestApp {
  app: NestFastifyApplication;
  /** supertest against the app; add `.set('X-Api-Key', keys.client)` per request. */
  http: request.Agent;
  /** Secret API key of each caller. */
  keys: Record<KeyName, string>;
  principals: Readonly<Record<KeyName, string>>;
  /** Funded wallet addresses configured as client-1's and client-2's payer address. */
  clientWallet: string;
  client2Wallet: string;
  databaseUrl: string;
  /** The wallet daemon this app talks to. */
  daemon: WalletDaemonHelper;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /**
   * Another app whose database, keys, wallets and daemon this one shares: a second
   * coordinator instance, for races between instances.
   */
  sameAs?: TestApp;
  /** A daemon other than the shared one (see `startPrivateDaemon`). */
  daemon?: WalletDaemonHelper;
}

/**
 * Builds the whole app from AppModule (all globals, exactly as in production) on a
 * fresh database of its own, with known API keys and two funded client wallets.
 * Sweeps are off: tests call the sweep services themselves for determinism. Logging
 * follows LOG_LEVEL, which global setup defaults to `silent`.
 */
export async function startTestApp(env: Record<string, string> = {}, options: TestAppOptions = {}): Promise<TestApp> {
  const { sameAs } = options;
  const daemon = options.daemon ?? sameAs?.daemon ?? sharedDaemon();
  const [databaseUrl, clientWallet, client2Wallet] = sameAs
    ? [sameAs.databaseUrl, sameAs.clientWallet, sameAs.client2Wallet]
    : await Promise.all([
        createIsolatedDatabase(),
        daemon.fundedAddress(CLIENT_WALLET_FUNDS),
        daemon.fundedAddress(CLIENT_WALLET_FUNDS),
      ]);
  const keys = sameAs?.keys ?? newKeys();
  const dataDir = await mkdtemp(join(tmpdir(), 'coordinator-e2e-'));

  Object.assign(process.env, {
    DATABASE_URL: databaseUrl,
    WALLET_DAEMON_URL: daemon.endpoint.url,
    WALLET_DAEMON_TOKEN: daemon.endpoint.token,
    API_KEYS: [
      `client:${PRINCIPALS.client}:${keys.client}:${clientWallet}`,
      `client:${PRINCIPALS.client2}:${keys.client2}:${client2Wallet}`,
      `miner:${PRINCIPALS.miner}:${keys.miner}`,
      `miner:${PRINCIPALS.miner2}:${keys.miner2}`,
      `admin:${PRINCIPALS.admin}:${keys.admin}`,
    ].join(','),
    SWEEPS_ENABLED: 'false',
    // Rate limiting has its own test; elsewhere it would only get in the way of bulk requests.
    RATE_LIMIT_PER_MINUTE: '0',
    ESCROW_MIN_TIMEOUT_SECONDS: '1',
    DATA_DIR: dataDir,
    ...env,
  });

  let app: NestFastifyApplication | undefined;
  try {
    app = await createApp();
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  } catch (error) {
    await app?.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  const started = app;
  return {
    app: started,
    http: request(started.getHttpServer()),
    keys,
    principals: PRINCIPALS,
    clientWallet,
    client2Wallet,
    databaseUrl,
    daemon,
    // The database stays until global teardown drops it with the rest of the run's.
    async close() {
      await started.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function newKeys(): Record<KeyName, string> {
  const secret = (name: KeyName) => `${name}-${randomBytes(12).toString('hex')}`;
  return {
    client: secret('client'),
    client2: secret('client2'),
    miner: secret('miner'),
    miner2: secret('miner2'),
    admin: secret('admin'),
  };
}
