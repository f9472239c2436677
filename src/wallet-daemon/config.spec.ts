import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_WALLET_DAEMON_PORT, loadWalletDaemonConfig, SEED_FILE_NAME } from './config';

const SEED_HEX = '00'.repeat(15) + '01';

function env(overrides: Record<string, string | undefined> = {}) {
  return {
    WALLET_DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
    WALLET_DAEMON_TOKEN: 'secret',
    WALLET_SEED: SEED_HEX,
    ...overrides,
  };
}

describe('loadWalletDaemonConfig', () => {
  it('applies the defaults', () => {
    const config = loadWalletDaemonConfig(env());
    expect(config).toMatchObject({
      port: DEFAULT_WALLET_DAEMON_PORT,
      token: 'secret',
      btcNetwork: 'regtest',
      faults: { fail_rate: 0, latency_ms: 0, drop_rate: 0 },
      logLevel: 'info',
      bodyLimits: { maxDepth: 16, maxEntries: 20_000 },
    });
    expect(Buffer.from(config.seed).toString('hex')).toBe(SEED_HEX);
  });

  it('reads every setting', () => {
    const config = loadWalletDaemonConfig(
      env({
        WALLET_DAEMON_PORT: '0',
        WALLET_BTC_NETWORK: 'testnet',
        WALLET_FAULT_FAIL_RATE: '0.25',
        WALLET_FAULT_LATENCY_MS: '15',
        WALLET_FAULT_DROP_RATE: '1',
        LOG_LEVEL: 'warn',
        WALLET_BODY_MAX_DEPTH: '8',
        WALLET_BODY_MAX_ENTRIES: '6000',
      }),
    );
    expect(config).toMatchObject({
      port: 0,
      btcNetwork: 'testnet',
      faults: { fail_rate: 0.25, latency_ms: 15, drop_rate: 1 },
      logLevel: 'warn',
      bodyLimits: { maxDepth: 8, maxEntries: 6000 },
    });
  });

  it.each([
    [{ WALLET_DATABASE_URL: undefined }, 'WALLET_DATABASE_URL'],
    [{ WALLET_DATABASE_URL: 'mysql://localhost/db' }, 'WALLET_DATABASE_URL'],
    [{ WALLET_DATABASE_URL: 'not a url' }, 'WALLET_DATABASE_URL'],
    [{ WALLET_DAEMON_TOKEN: '' }, 'WALLET_DAEMON_TOKEN'],
    [{ WALLET_DAEMON_TOKEN: undefined }, 'WALLET_DAEMON_TOKEN'],
    [{ WALLET_DAEMON_PORT: '70000' }, 'WALLET_DAEMON_PORT'],
    [{ WALLET_DAEMON_PORT: '-1' }, 'WALLET_DAEMON_PORT'],
    [{ WALLET_DAEMON_PORT: '80.5' }, 'WALLET_DAEMON_PORT'],
    [{ WALLET_BTC_NETWORK: 'signet' }, 'WALLET_BTC_NETWORK'],
    [{ WALLET_FAULT_FAIL_RATE: '1.5' }, 'WALLET_FAULT_FAIL_RATE'],
    [{ WALLET_FAULT_DROP_RATE: 'often' }, 'WALLET_FAULT_DROP_RATE'],
    [{ WALLET_BODY_MAX_DEPTH: '3' }, 'WALLET_BODY_MAX_DEPTH'],
    [{ WALLET_BODY_MAX_DEPTH: 'deep' }, 'WALLET_BODY_MAX_DEPTH'],
    // Fewer would refuse a full settle-batch.
    [{ WALLET_BODY_MAX_ENTRIES: '4999' }, 'WALLET_BODY_MAX_ENTRIES'],
    [{ WALLET_FAULT_LATENCY_MS: '-5' }, 'WALLET_FAULT_LATENCY_MS'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ WALLET_SEED: 'abcd' }, 'WALLET_SEED'],
    [{ WALLET_SEED: 'zz'.repeat(16) }, 'WALLET_SEED'],
  ])('rejects %j naming %s', (overrides, variable) => {
    expect(() => loadWalletDaemonConfig(env(overrides))).toThrow(new RegExp(`^${variable} `));
  });

  it('never puts the token in an error message', () => {
    expect(() => loadWalletDaemonConfig(env({ WALLET_DAEMON_TOKEN: 'hunter2', WALLET_DATABASE_URL: '' }))).toThrow(
      /^(?!.*hunter2)/,
    );
  });
});

describe('seed file', () => {
  it('creates a 32-byte seed with mode 0600 under DATA_DIR and reuses it', () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'wallet-seed-')), 'nested');
    const first = loadWalletDaemonConfig(env({ WALLET_SEED: undefined, DATA_DIR: dataDir }));
    const second = loadWalletDaemonConfig(env({ WALLET_SEED: undefined, DATA_DIR: dataDir }));
    const file = join(dataDir, SEED_FILE_NAME);
    expect(first.seed).toHaveLength(32);
    expect(Buffer.from(second.seed).equals(Buffer.from(first.seed))).toBe(true);
    expect(readFileSync(file, 'utf8').trim()).toBe(Buffer.from(first.seed).toString('hex'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('prefers WALLET_SEED over the file', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'wallet-seed-'));
    const config = loadWalletDaemonConfig(env({ DATA_DIR: dataDir }));
    expect(Buffer.from(config.seed).toString('hex')).toBe(SEED_HEX);
  });
});
