import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { spawnWalletDaemon } from '../src/wallet-daemon/spawn';
import { onCleanup, ROOT } from './processes';
import { progress } from './util';

export interface BenchDaemon {
  url: string;
  token: string;
  pid: number;
  call<T = any>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

/** The local wallet daemon as its own process on its own database, quiet (LOG_LEVEL=warn). */
export async function startDaemon(walletUrl: string, logFile: string, profileDir?: string): Promise<BenchDaemon> {
  const token = randomBytes(24).toString('hex');
  const daemon = await spawnWalletDaemon({
    databaseUrl: walletUrl,
    token,
    port: 0,
    seed: randomBytes(32).toString('hex'),
    dataDir: join(ROOT, '.data', 'bench'),
    env: {
      LOG_LEVEL: 'warn',
      ...(profileDir
        ? {
            NODE_OPTIONS:
              `${process.env.NODE_OPTIONS ?? ''} --require ${join(__dirname, 'cpu-profile-preload.js')}`.trim(),
            BENCH_CPU_PROFILE: join(profileDir, 'wallet-daemon.cpuprofile'),
          }
        : {}),
    },
    logFile,
  });
  onCleanup('wallet daemon', () => daemon.stop());
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const answer = await fetch(`${daemon.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`wallet daemon ${method} ${path} → ${answer.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  progress(`wallet daemon at ${daemon.url} (pid ${daemon.child.pid})`);
  return { url: daemon.url, token, pid: daemon.child.pid as number, call, stop: () => daemon.stop() };
}

/** A fresh HD address of the daemon (a valid regtest bech32 address). */
export async function newAddress(daemon: BenchDaemon, currency = 'BTC'): Promise<string> {
  return (await daemon.call<{ address: string }>('POST', '/api/v1/addresses', { currency })).address;
}

export async function faucet(daemon: BenchDaemon, address: string, amount: string, currency = 'BTC'): Promise<string> {
  return (await daemon.call<{ balance: string }>('POST', '/api/v1/faucet', { address, amount, currency })).balance;
}

export interface LedgerTotals {
  minted: string;
  balances: string;
  held: string;
}

export async function ledgerTotals(daemon: BenchDaemon, currency = 'BTC'): Promise<LedgerTotals> {
  return daemon.call<LedgerTotals>('GET', `/api/v1/ledger/totals?currency=${currency}`);
}
