import { ApiKeyEntry, parseApiKeys } from '../auth/api-keys';
import { CurrencyConfig, DEFAULT_CURRENCIES, parseCurrencies } from '../common/currencies';
import { parseProviders, parseRouting, ProviderConfig, RoutingConfig } from '../providers/provider-config';

/**
 * Every setting of the service, validated once at boot. A bad value throws a
 * `ConfigError` naming the variable, and the process stops before serving anything.
 */
export interface AppConfig {
  nodeEnv: 'development' | 'production' | 'test';
  port: number;
  dataDir: string;
  /** Set by the time Nest starts: either the operator's or the embedded server's URL. */
  databaseUrl: string | undefined;
  dbPoolSize: number;
  walletDaemonUrl: string | undefined;
  walletDaemonToken: string | undefined;
  walletDaemonTimeoutMs: number;
  walletDaemonRetries: number;
  /** Settlements per batch call to the daemon (sweep and re-drive); 0 = one call per escrow. */
  walletDaemonBatchSize: number;
  /** How long a decided settlement is left to the request that decided it before the re-drive worker takes over. */
  settlementLeaseMs: number;
  /** How long an unfinished Idempotency-Key claim is its attempt's before a retry may take it over. */
  idempotencyLeaseMs: number;
  /** Most concurrent single requests of one kind carried out as one group (0: every request alone). */
  coalesceMaxGroup: number;
  /** Groups of one kind in flight at once (1: the next group gathers while one is carried out). */
  coalesceLanes: number;
  redriveIntervalMs: number;
  /** How often an instance tries a reconciliation pass with the wallet daemon; 0: never. */
  reconcileIntervalMs: number;
  walletDaemonPort: number;
  walletSeed: string | undefined;
  apiKeys: ApiKeyEntry[];
  /** True when API_KEYS was unset and the fixed development keys are in use. */
  demoKeys: boolean;
  currencies: Map<string, CurrencyConfig>;
  defaultCurrency: string;
  jobTtlDefaultSeconds: number;
  jobTtlMaxSeconds: number;
  escrowTimeoutSeconds: number;
  escrowMinTimeoutSeconds: number;
  escrowMaxTimeoutSeconds: number;
  escrowSweepIntervalMs: number;
  jobSweepIntervalMs: number;
  /** Sweeps can be switched off (tests drive them by hand for determinism). */
  sweepsEnabled: boolean;
  receiptSigningKey: string | undefined;
  receiptPreviousPublicKeys: string[];
  logLevel: string;
  /** Requests per minute per principal (per IP without a known key); 0 = off. */
  rateLimitPerMinute: number;
  /** Allowed browser origins; empty = CORS off. */
  corsOrigins: string[];
  /** Deepest nesting of a JSON body (the body itself is level 1), checked on the raw text before parsing. */
  bodyMaxDepth: number;
  /** Most object members plus array elements in a JSON body, checked on the raw text before parsing. */
  bodyMaxEntries: number;
  /** Delay in seconds before each retry of a failed webhook delivery; after the last, the delivery has failed. */
  webhookRetrySchedule: number[];
  /** An endpoint whose attempts have all failed for this long is disabled. */
  webhookDisableAfterSeconds: number;
  /** Loopback, private and link-local webhook URLs (development and tests only). */
  webhookAllowPrivateUrls: boolean;
  /** A delivery is a 2xx answer within this time. */
  webhookTimeoutMs: number;
  /** How long the old secret keeps signing alongside the new one after a rotation. */
  webhookSecretOverlapSeconds: number;
  /** The delivery worker runs on every instance unless switched off. */
  webhookDeliveryEnabled: boolean;
  webhookPollIntervalMs: number;
  /** Deliveries claimed per statement, and sent concurrently, by one worker. */
  webhookBatchSize: number;
  /** Seals webhook signing secrets at rest (AES-256-GCM); unset: stored as they are. */
  webhookSecretsKey: Buffer | undefined;
  /** The wallet daemons payments are held at (README "Providers and routing"); unset: `local` at WALLET_DAEMON_URL. */
  paymentProviders: ProviderConfig[];
  paymentRouting: RoutingConfig;
  /** Consecutive failed calls that open a provider's circuit. */
  providerBreakerFailures: number;
  /** How long an open circuit waits before one probe call. */
  providerBreakerCooldownMs: number;
  /** How often an instance reloads the shared provider state (breaker, drain) and adds its call counts. */
  providerStateRefreshMs: number;
}

/** About 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (README "Webhooks"). */
export const DEFAULT_WEBHOOK_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

/** `payload` and `constraints` may be 16 levels deep; one more level is the body around them. */
export const MIN_BODY_MAX_DEPTH = 17;
/** Far below where the recursive walks after parsing (class-transformer) overflow the stack. */
export const MAX_BODY_MAX_DEPTH = 256;

export class ConfigError extends Error {}

/** Fixed development keys: printed at boot, refused in production. */
export const DEMO_KEYS = {
  client: 'demo-client-key',
  miner: 'demo-miner-key',
  admin: 'demo-admin-key',
};
/** A valid regtest address for the demo client; the local wallet daemon funds it at boot. */
export const DEMO_CLIENT_WALLET = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';

export function loadConfig(env: NodeJS.ProcessEnv): AppConfig {
  const nodeEnv = oneOf(env, 'NODE_ENV', ['development', 'production', 'test'], 'development');
  const production = nodeEnv === 'production';

  const demoKeys = !env.API_KEYS;
  if (demoKeys && production) throw new ConfigError('API_KEYS: required when NODE_ENV=production');
  const apiKeys = wrap(() =>
    parseApiKeys(
      env.API_KEYS ??
        `client:demo-client:${DEMO_KEYS.client}:${DEMO_CLIENT_WALLET},miner:demo-miner:${DEMO_KEYS.miner},admin:demo-admin:${DEMO_KEYS.admin}`,
    ),
  );

  const currencies = wrap(() => parseCurrencies(env.CURRENCIES ?? DEFAULT_CURRENCIES));
  const defaultCurrency = env.DEFAULT_CURRENCY ?? [...currencies.keys()][0];
  if (!currencies.has(defaultCurrency)) {
    throw new ConfigError(
      `DEFAULT_CURRENCY: "${defaultCurrency}" is not one of CURRENCIES (${[...currencies.keys()].join(', ')})`,
    );
  }

  const walletDaemonUrl = optionalUrl(env, 'WALLET_DAEMON_URL');
  if (walletDaemonUrl && !env.WALLET_DAEMON_TOKEN) {
    throw new ConfigError('WALLET_DAEMON_TOKEN: required when WALLET_DAEMON_URL is set');
  }
  if (production && !walletDaemonUrl) throw new ConfigError('WALLET_DAEMON_URL: required when NODE_ENV=production');
  if (production && !env.RECEIPT_SIGNING_KEY)
    throw new ConfigError('RECEIPT_SIGNING_KEY: required when NODE_ENV=production');

  const paymentProviders = wrap(() =>
    parseProviders(env.PAYMENT_PROVIDERS, currencies, {
      url: walletDaemonUrl,
      token: env.WALLET_DAEMON_TOKEN || undefined,
    }),
  );
  const paymentRouting = wrap(() => parseRouting(env.PAYMENT_ROUTING, paymentProviders, currencies));

  const escrowMinTimeoutSeconds = int(env, 'ESCROW_MIN_TIMEOUT_SECONDS', 60, 1, 86_400);
  const escrowMaxTimeoutSeconds = int(
    env,
    'ESCROW_MAX_TIMEOUT_SECONDS',
    30 * 86_400,
    escrowMinTimeoutSeconds,
    365 * 86_400,
  );
  const escrowTimeoutSeconds = int(
    env,
    'ESCROW_TIMEOUT_SECONDS',
    3600,
    escrowMinTimeoutSeconds,
    escrowMaxTimeoutSeconds,
  );
  const jobTtlMaxSeconds = int(env, 'JOB_TTL_MAX_SECONDS', 7 * 86_400, 1, 365 * 86_400);

  return {
    nodeEnv,
    port: int(env, 'PORT', 8000, 0, 65_535),
    dataDir: env.DATA_DIR || './.data',
    databaseUrl: optionalUrl(env, 'DATABASE_URL'),
    dbPoolSize: int(env, 'DB_POOL_SIZE', 10, 1, 200),
    walletDaemonUrl,
    walletDaemonToken: env.WALLET_DAEMON_TOKEN || undefined,
    walletDaemonTimeoutMs: int(env, 'WALLET_DAEMON_TIMEOUT_MS', 5000, 50, 120_000),
    walletDaemonRetries: int(env, 'WALLET_DAEMON_RETRIES', 3, 0, 10),
    walletDaemonBatchSize: int(env, 'WALLET_DAEMON_BATCH_SIZE', 500, 0, 500),
    settlementLeaseMs: int(env, 'SETTLEMENT_LEASE_MS', 30_000, 100, 3_600_000),
    idempotencyLeaseMs: int(env, 'IDEMPOTENCY_LEASE_MS', 30_000, 100, 300_000),
    coalesceMaxGroup: int(env, 'COALESCE_MAX_GROUP', 100, 0, 500),
    coalesceLanes: int(env, 'COALESCE_LANES', 1, 1, 16),
    redriveIntervalMs: int(env, 'REDRIVE_INTERVAL_MS', 1000, 50, 3_600_000),
    reconcileIntervalMs: intervalOrOff(env, 'RECONCILE_INTERVAL_MS', 60_000, 1000, 86_400_000),
    walletDaemonPort: int(env, 'WALLET_DAEMON_PORT', 20000, 0, 65_535),
    walletSeed: env.WALLET_SEED || undefined,
    apiKeys,
    demoKeys,
    currencies,
    defaultCurrency,
    jobTtlDefaultSeconds: int(env, 'JOB_TTL_DEFAULT_SECONDS', 900, 1, jobTtlMaxSeconds),
    jobTtlMaxSeconds,
    escrowTimeoutSeconds,
    escrowMinTimeoutSeconds,
    escrowMaxTimeoutSeconds,
    escrowSweepIntervalMs: int(env, 'ESCROW_SWEEP_INTERVAL_MS', 1000, 50, 3_600_000),
    jobSweepIntervalMs: int(env, 'JOB_SWEEP_INTERVAL_MS', 1000, 50, 3_600_000),
    sweepsEnabled: bool(env, 'SWEEPS_ENABLED', true),
    receiptSigningKey: env.RECEIPT_SIGNING_KEY ? env.RECEIPT_SIGNING_KEY.replace(/\\n/g, '\n') : undefined,
    receiptPreviousPublicKeys: (env.RECEIPT_PREVIOUS_PUBLIC_KEYS ?? '')
      .split('|')
      .map((s) => s.replace(/\\n/g, '\n').trim())
      .filter(Boolean),
    rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 1200, 0, 10_000_000),
    corsOrigins: (env.CORS_ORIGINS ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    bodyMaxDepth: int(env, 'BODY_MAX_DEPTH', 32, MIN_BODY_MAX_DEPTH, MAX_BODY_MAX_DEPTH),
    bodyMaxEntries: int(env, 'BODY_MAX_ENTRIES', 10_000, 100, 1_000_000),
    webhookRetrySchedule: secondsList(env, 'WEBHOOK_RETRY_SCHEDULE', DEFAULT_WEBHOOK_RETRY_SCHEDULE),
    webhookDisableAfterSeconds: int(env, 'WEBHOOK_DISABLE_AFTER_SECONDS', 5 * 86_400, 1, 365 * 86_400),
    webhookAllowPrivateUrls: bool(env, 'WEBHOOK_ALLOW_PRIVATE_URLS', false),
    webhookTimeoutMs: int(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
    webhookSecretOverlapSeconds: int(env, 'WEBHOOK_SECRET_OVERLAP_SECONDS', 86_400, 0, 30 * 86_400),
    webhookDeliveryEnabled: bool(env, 'WEBHOOK_DELIVERY_ENABLED', true),
    webhookPollIntervalMs: int(env, 'WEBHOOK_POLL_INTERVAL_MS', 500, 10, 60_000),
    webhookBatchSize: int(env, 'WEBHOOK_BATCH_SIZE', 200, 1, 1000),
    webhookSecretsKey: base64Key(env, 'WEBHOOK_SECRETS_KEY', 32),
    paymentProviders,
    paymentRouting,
    providerBreakerFailures: int(env, 'PROVIDER_BREAKER_FAILURES', 5, 1, 1000),
    providerBreakerCooldownMs: int(env, 'PROVIDER_BREAKER_COOLDOWN_MS', 10_000, 50, 3_600_000),
    providerStateRefreshMs: int(env, 'PROVIDER_STATE_REFRESH_MS', 1000, 50, 60_000),
    logLevel: oneOf(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  };
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name}: "${raw}" is not a whole number`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`${name}: ${value} is outside ${min}..${max}`);
  return value;
}

/** 0 (switched off) or a whole number of milliseconds within min..max. */
function intervalOrOff(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const value = int(env, name, fallback, 0, max);
  if (value !== 0 && value < min)
    throw new ConfigError(`${name}: ${value} is neither 0 (off) nor within ${min}..${max}`);
  return value;
}

/** A comma list of whole seconds, e.g. `1,1,2`; at least one entry. */
function secondsList(env: NodeJS.ProcessEnv, name: string, fallback: number[]): number[] {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) > 30 * 86_400))
    throw new ConfigError(`${name}: "${raw}" is not a comma list of whole seconds (each at most 2592000)`);
  return parts.map(Number);
}

/** A key given in base64 that must decode to exactly `bytes` bytes. Never echoed. */
function base64Key(env: NodeJS.ProcessEnv, name: string, bytes: number): Buffer | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return undefined;
  const key = Buffer.from(raw, 'base64');
  if (key.length !== bytes || key.toString('base64') !== raw)
    throw new ConfigError(`${name}: not ${bytes} bytes in base64 (e.g. \`openssl rand -base64 ${bytes}\`)`);
  return key;
}

function bool(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(`${name}: "${raw}" is not true or false`);
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!allowed.includes(raw as T)) throw new ConfigError(`${name}: "${raw}" is not one of ${allowed.join(', ')}`);
  return raw as T;
}

function optionalUrl(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  try {
    new URL(raw);
  } catch {
    // Never echo the value: a database URL carries a password.
    throw new ConfigError(`${name}: not a valid URL`);
  }
  return raw;
}
