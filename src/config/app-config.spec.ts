import { ConfigError, loadConfig } from './app-config';

describe('loadConfig', () => {
  it('has working development defaults with demo keys', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8000);
    expect(config.escrowTimeoutSeconds).toBe(3600);
    expect(config.escrowMinTimeoutSeconds).toBe(60);
    expect(config.demoKeys).toBe(true);
    expect(config.apiKeys.map((k) => k.role).sort()).toEqual(['admin', 'client', 'miner']);
    expect(config.currencies.has(config.defaultCurrency)).toBe(true);
    expect({ depth: config.bodyMaxDepth, entries: config.bodyMaxEntries }).toEqual({ depth: 32, entries: 10_000 });
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ ESCROW_TIMEOUT_SECONDS: '5' }, 'ESCROW_TIMEOUT_SECONDS'],
    [{ DEFAULT_CURRENCY: 'DOGE' }, 'DEFAULT_CURRENCY'],
    [{ DATABASE_URL: 'not a url' }, 'DATABASE_URL'],
    [{ WALLET_DAEMON_URL: 'http://127.0.0.1:1' }, 'WALLET_DAEMON_TOKEN'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ API_KEYS: 'boss:x:secret-aaaa' }, 'API_KEYS'],
    [{ NODE_ENV: 'production' }, 'API_KEYS'],
    [{ SWEEPS_ENABLED: 'maybe' }, 'SWEEPS_ENABLED'],
    // Shallower than a 16-level payload inside the body would refuse valid jobs.
    [{ BODY_MAX_DEPTH: '16' }, 'BODY_MAX_DEPTH'],
    [{ BODY_MAX_DEPTH: '257' }, 'BODY_MAX_DEPTH'],
    [{ BODY_MAX_ENTRIES: '99' }, 'BODY_MAX_ENTRIES'],
    // 0 switches reconciliation off; anything else is at least a second.
    [{ RECONCILE_INTERVAL_MS: '500' }, 'RECONCILE_INTERVAL_MS'],
    [{ RECONCILE_INTERVAL_MS: '-1' }, 'RECONCILE_INTERVAL_MS'],
    [{ RECONCILE_INTERVAL_MS: '86400001' }, 'RECONCILE_INTERVAL_MS'],
  ])('stops on %j naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${name}: `));
  });

  it.each([
    [{}, 60_000],
    [{ RECONCILE_INTERVAL_MS: '0' }, 0],
    [{ RECONCILE_INTERVAL_MS: '1000' }, 1000],
  ])('RECONCILE_INTERVAL_MS from %j: %d', (env, ms) => {
    expect(loadConfig(env).reconcileIntervalMs).toBe(ms);
  });

  it('never echoes a database URL (it may carry a password)', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://u:hunter2@' })).not.toThrow(/hunter2/);
  });
});
