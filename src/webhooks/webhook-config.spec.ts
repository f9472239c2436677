import { ConfigError, DEFAULT_WEBHOOK_RETRY_SCHEDULE, loadConfig } from '../config/app-config';

describe('webhook configuration', () => {
  it('defaults: the documented retry schedule, 5 days to disable, private URLs refused, 10 s timeout, 24 h overlap', () => {
    const config = loadConfig({});
    expect(config.webhookRetrySchedule).toEqual(DEFAULT_WEBHOOK_RETRY_SCHEDULE);
    expect(DEFAULT_WEBHOOK_RETRY_SCHEDULE).toEqual([5, 300, 1800, 7200, 18_000, 36_000, 36_000]);
    expect(config.webhookDisableAfterSeconds).toBe(5 * 86_400);
    expect(config.webhookAllowPrivateUrls).toBe(false);
    expect(config.webhookTimeoutMs).toBe(10_000);
    expect(config.webhookSecretOverlapSeconds).toBe(86_400);
  });

  it('WEBHOOK_SECRETS_KEY: 32 bytes in base64, never echoed when wrong', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    expect(loadConfig({ WEBHOOK_SECRETS_KEY: key }).webhookSecretsKey).toEqual(Buffer.alloc(32, 7));
    expect(loadConfig({}).webhookSecretsKey).toBeUndefined();
    expect(() => loadConfig({ WEBHOOK_SECRETS_KEY: 'c2VjcmV0LXZhbHVl' })).not.toThrow(/c2VjcmV0/);
  });

  it('WEBHOOK_RETRY_SCHEDULE replaces the schedule', () => {
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE: '1, 1,2' }).webhookRetrySchedule).toEqual([1, 1, 2]);
  });

  it.each([
    [{ WEBHOOK_RETRY_SCHEDULE: '1,,2' }, 'WEBHOOK_RETRY_SCHEDULE'],
    [{ WEBHOOK_RETRY_SCHEDULE: '1.5' }, 'WEBHOOK_RETRY_SCHEDULE'],
    [{ WEBHOOK_RETRY_SCHEDULE: '-1' }, 'WEBHOOK_RETRY_SCHEDULE'],
    [{ WEBHOOK_ALLOW_PRIVATE_URLS: 'yes' }, 'WEBHOOK_ALLOW_PRIVATE_URLS'],
    [{ WEBHOOK_DISABLE_AFTER_SECONDS: '0' }, 'WEBHOOK_DISABLE_AFTER_SECONDS'],
    [{ WEBHOOK_TIMEOUT_MS: '99' }, 'WEBHOOK_TIMEOUT_MS'],
    [{ WEBHOOK_BATCH_SIZE: '0' }, 'WEBHOOK_BATCH_SIZE'],
    [{ WEBHOOK_SECRETS_KEY: Buffer.alloc(16).toString('base64') }, 'WEBHOOK_SECRETS_KEY'],
    [{ WEBHOOK_SECRETS_KEY: 'not base64 at all!' }, 'WEBHOOK_SECRETS_KEY'],
  ])('stops on %j naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${name}: `));
  });
});
