import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BtcNetwork, isBtcNetwork } from '../common/addresses';
import type { JsonShapeLimits } from '../common/json-limits';
import { FaultSettings, MAX_LATENCY_MS } from './faults';

export const DEFAULT_WALLET_DAEMON_PORT = 20000;
export const WALLET_DAEMON_HOST = '127.0.0.1';
export const SEED_FILE_NAME = 'wallet-seed';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface WalletDaemonConfig {
  databaseUrl: string;
  port: number;
  token: string;
  /** BIP32 master seed (16..64 bytes). */
  seed: Uint8Array;
  btcNetwork: BtcNetwork;
  faults: FaultSettings;
  logLevel: LogLevel;
  /** Connections of the daemon's pg pool. */
  poolSize: number;
  /** Shape limits of JSON bodies, checked on the raw text before parsing. */
  bodyLimits: JsonShapeLimits;
}

/** A full settle-batch (500 items of 7 fields, as the coordinator sends them) has 4,001 entries; its depth is 3. */
const MIN_BODY_MAX_ENTRIES = 5_000;

/** A bad environment value; the message names the variable. */
export class WalletDaemonConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable} ${problem}`);
    this.name = 'WalletDaemonConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads and validates the daemon's environment; throws WalletDaemonConfigError on the first bad value. */
export function loadWalletDaemonConfig(env: Env = process.env): WalletDaemonConfig {
  return {
    databaseUrl: readDatabaseUrl(env),
    port: readPort(env),
    token: readToken(env),
    btcNetwork: readBtcNetwork(env),
    faults: {
      fail_rate: readRate(env, 'WALLET_FAULT_FAIL_RATE'),
      latency_ms: readLatency(env),
      drop_rate: readRate(env, 'WALLET_FAULT_DROP_RATE'),
    },
    logLevel: readLogLevel(env),
    poolSize: 8,
    bodyLimits: {
      maxDepth: readWholeNumber(env, 'WALLET_BODY_MAX_DEPTH', 16, 4, 256),
      maxEntries: readWholeNumber(env, 'WALLET_BODY_MAX_ENTRIES', 20_000, MIN_BODY_MAX_ENTRIES, 1_000_000),
    },
    // Last: it may create the seed file, which should not happen for an otherwise bad config.
    seed: readSeed(env),
  };
}

function present(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function readDatabaseUrl(env: Env): string {
  const name = 'WALLET_DATABASE_URL';
  const value = present(env, name);
  if (!value) throw new WalletDaemonConfigError(name, 'is required (a postgres:// URL)');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new WalletDaemonConfigError(name, 'is not a valid URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new WalletDaemonConfigError(name, 'must be a postgres:// or postgresql:// URL');
  }
  return value;
}

function readPort(env: Env): number {
  const name = 'WALLET_DAEMON_PORT';
  const value = present(env, name);
  if (value === undefined) return DEFAULT_WALLET_DAEMON_PORT;
  const port = Number(value);
  if (!/^[0-9]+$/.test(value) || port > 65535) {
    throw new WalletDaemonConfigError(name, 'must be an integer between 0 and 65535 (0 = any free port)');
  }
  return port;
}

function readToken(env: Env): string {
  const name = 'WALLET_DAEMON_TOKEN';
  // Not trimmed: the token is compared byte for byte with the Authorization header.
  const value = env[name];
  if (!value) throw new WalletDaemonConfigError(name, 'is required (the bearer token clients send)');
  return value;
}

function readBtcNetwork(env: Env): BtcNetwork {
  const name = 'WALLET_BTC_NETWORK';
  const value = present(env, name) ?? 'regtest';
  if (!isBtcNetwork(value)) throw new WalletDaemonConfigError(name, 'must be one of mainnet, testnet, regtest');
  return value;
}

function readRate(env: Env, name: string): number {
  const value = present(env, name);
  if (value === undefined) return 0;
  const rate = Number(value);
  if (!Number.isFinite(rate) || rate < 0 || rate > 1) {
    throw new WalletDaemonConfigError(name, 'must be a number between 0 and 1');
  }
  return rate;
}

function readLatency(env: Env): number {
  const name = 'WALLET_FAULT_LATENCY_MS';
  const value = present(env, name);
  if (value === undefined) return 0;
  const latency = Number(value);
  if (!/^[0-9]+$/.test(value) || latency > MAX_LATENCY_MS) {
    throw new WalletDaemonConfigError(name, `must be an integer between 0 and ${MAX_LATENCY_MS}`);
  }
  return latency;
}

function readWholeNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = present(env, name);
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || number < min || number > max) {
    throw new WalletDaemonConfigError(name, `must be an integer between ${min} and ${max}`);
  }
  return number;
}

function readLogLevel(env: Env): LogLevel {
  const name = 'LOG_LEVEL';
  const value = present(env, name) ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new WalletDaemonConfigError(name, `must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return value as LogLevel;
}

/** WALLET_SEED when set; otherwise the seed kept under DATA_DIR, created on first start. */
function readSeed(env: Env): Uint8Array {
  const value = present(env, 'WALLET_SEED');
  if (value !== undefined) return parseSeedHex(value, 'WALLET_SEED');
  return loadOrCreateSeedFile(resolve(present(env, 'DATA_DIR') ?? './.data'));
}

/** BIP32 accepts master seeds of 16 to 64 bytes. */
export function parseSeedHex(hex: string, source: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2}){16,64}$/.test(hex)) {
    throw new WalletDaemonConfigError(source, 'must be 16 to 64 bytes of hex');
  }
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** Reads `<dataDir>/wallet-seed`, or writes 32 fresh random bytes there (mode 0600). */
export function loadOrCreateSeedFile(dataDir: string): Uint8Array {
  const path = join(dataDir, SEED_FILE_NAME);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // 'wx' fails if another process created the file first; then we read theirs.
    writeFileSync(path, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new WalletDaemonConfigError(
        'DATA_DIR',
        `is not writable for the wallet seed (${path}): ${(error as Error).message}`,
      );
    }
  }
  return parseSeedHex(readFileSync(path, 'utf8').trim(), `wallet seed file ${path}`);
}
