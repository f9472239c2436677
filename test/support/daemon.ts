import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { Money } from '../../src/common/money';
import { spawnWalletDaemon } from '../../src/wallet-daemon/spawn';
import { createDatabase, requiredTestEnv, TEST_ENV, withClient, withDatabaseName } from './postgres';

/**
 * Typed HTTP helpers for the local wallet daemon, used by e2e specs to fund wallets
 * and check what really moved. Amounts stay decimal strings; arithmetic uses `Money`.
 */

/** Fixed BIP32 seed (test vector 1), so every run derives the same address sequence. */
export const TEST_WALLET_SEED = '000102030405060708090a0b0c0d0e0f';

/** Where test daemons append their error logs (a 500's cause); the test output stays quiet. */
export const DAEMON_LOG_FILE = resolve(__dirname, '../../.data/test-logs/wallet-daemon.log');

export interface FaultSettings {
  fail_rate: number;
  latency_ms: number;
  drop_rate: number;
}

export interface LedgerTotals {
  currency: string;
  minted: string;
  balances: string;
  held: string;
}

/** One ledger transfer touching an escrow. */
export interface DaemonTransfer {
  transaction_hash: string;
  kind: 'create' | 'release' | 'refund' | 'faucet';
  amount: string;
  from: string;
  /** The first credited address (the payee of a release). */
  to: string;
  /** Every credited address in order: a partial release credits the payee, then the refund address. */
  credits: Array<{ address: string; amount: string }>;
  created_at: string;
}

export interface DaemonEndpoint {
  url: string;
  token: string;
}

export class WalletDaemonHelper {
  constructor(readonly endpoint: DaemonEndpoint) {}

  async health(): Promise<{ status: string; database: string }> {
    return this.call('GET', '/health');
  }

  async newAddress(currency = 'BTC'): Promise<string> {
    const { address } = await this.call<{ address: string }>('POST', '/api/v1/addresses', { currency });
    return address;
  }

  async faucet(
    address: string,
    amount: string,
    currency = 'BTC',
  ): Promise<{ transaction_hash: string; balance: string }> {
    return this.call('POST', '/api/v1/faucet', { address, amount, currency });
  }

  /** A fresh address holding `amount`. */
  async fundedAddress(amount: string, currency = 'BTC'): Promise<string> {
    const address = await this.newAddress(currency);
    await this.faucet(address, amount, currency);
    return address;
  }

  async balance(address: string, currency = 'BTC'): Promise<string> {
    const query = new URLSearchParams({ currency });
    const { balance } = await this.call<{ balance: string }>(
      'GET',
      `/api/v1/accounts/${encodeURIComponent(address)}?${query}`,
    );
    return balance;
  }

  async ledgerTotals(currency = 'BTC'): Promise<LedgerTotals> {
    return this.call('GET', `/api/v1/ledger/totals?${new URLSearchParams({ currency })}`);
  }

  async escrowTransfers(escrowId: string): Promise<DaemonTransfer[]> {
    const { items } = await this.call<{ items: DaemonTransfer[] }>(
      'GET',
      `/api/v1/ledger/escrows/${encodeURIComponent(escrowId)}/transfers`,
    );
    return items;
  }

  async setFaults(faults: Partial<FaultSettings>): Promise<FaultSettings> {
    return this.call('POST', '/api/v1/faults', faults);
  }

  async resetFaults(): Promise<FaultSettings> {
    return this.setFaults({ fail_rate: 0, latency_ms: 0, drop_rate: 0 });
  }

  /** Money is neither created nor destroyed: what addresses and escrows hold is what was minted. */
  async expectLedgerConserved(currency = 'BTC'): Promise<void> {
    const totals = await this.ledgerTotals(currency);
    const accounted = new Money(totals.balances).plus(new Money(totals.held));
    if (!accounted.eq(new Money(totals.minted))) {
      throw new Error(
        `${currency} ledger not conserved: balances ${totals.balances} + held ${totals.held} = ${accounted.toFixed()}, minted ${totals.minted}`,
      );
    }
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.endpoint.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.endpoint.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`wallet daemon ${method} ${path} answered ${response.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** The daemon global setup started, shared by every test file of the run. */
export function sharedDaemon(): WalletDaemonHelper {
  return new WalletDaemonHelper({
    url: requiredTestEnv('WALLET_DAEMON_URL'),
    token: requiredTestEnv('WALLET_DAEMON_TOKEN'),
  });
}

export interface PrivateDaemon {
  daemon: WalletDaemonHelper;
  /** The daemon's own database (schema `wallet_daemon`), for specs that check what it received. */
  databaseUrl: string;
  stop(): Promise<void>;
}

let privateDaemons = 0;

/**
 * A wallet daemon of this test file alone, on its own database. Use it for fault
 * injection: faults are daemon-wide, and on the shared daemon they would hit the
 * test files running in parallel. Stop it in `afterAll`. `seed`: its own HD seed (several
 * daemons from one seed hand out the same addresses); `port`: a fixed port (default: any
 * free one); `databaseUrl`: another private daemon's database, for two daemons on one.
 */
export async function startPrivateDaemon(
  options: { seed?: string; port?: number; databaseUrl?: string } = {},
): Promise<PrivateDaemon> {
  const adminUrl = requiredTestEnv(TEST_ENV.adminUrl);
  let databaseUrl = options.databaseUrl;
  if (databaseUrl === undefined) {
    // Random part: files sharing a worker each restart the counter (own module registry).
    const name = `${requiredTestEnv(TEST_ENV.dbPrefix)}_d_${process.pid}_${++privateDaemons}_${randomBytes(3).toString('hex')}`;
    await withClient(adminUrl, (client) => createDatabase(client, name));
    databaseUrl = withDatabaseName(adminUrl, name);
  }
  const token = randomBytes(16).toString('hex');
  const spawned = await spawnWalletDaemon({
    databaseUrl,
    token,
    port: options.port ?? 0,
    seed: options.seed ?? TEST_WALLET_SEED,
    env: { LOG_LEVEL: 'error' },
    logFile: DAEMON_LOG_FILE,
  });
  return { daemon: new WalletDaemonHelper({ url: spawned.url, token }), databaseUrl, stop: () => spawned.stop() };
}

// Shortcuts on the shared daemon, for the common case.
export const newAddress = (currency = 'BTC') => sharedDaemon().newAddress(currency);
export const faucet = (address: string, amount: string, currency = 'BTC') =>
  sharedDaemon().faucet(address, amount, currency);
export const balance = (address: string, currency = 'BTC') => sharedDaemon().balance(address, currency);
export const ledgerTotals = (currency = 'BTC') => sharedDaemon().ledgerTotals(currency);
export const escrowTransfers = (escrowId: string) => sharedDaemon().escrowTransfers(escrowId);
export const setFaults = (faults: Partial<FaultSettings>) => sharedDaemon().setFaults(faults);
export const resetFaults = () => sharedDaemon().resetFaults();
export const expectLedgerConserved = (currency = 'BTC') => sharedDaemon().expectLedgerConserved(currency);
