import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCurrencies } from '../common/currencies';
import { loadConfig } from '../config/app-config';
import { parseProviders, parseRouting, ProviderConfig } from './provider-config';

const currencies = parseCurrencies(undefined);
const local = { url: 'http://127.0.0.1:20000', token: 'local-token' };
const A = { id: 'primary', url: 'http://127.0.0.1:20001', token: 'ta', currencies: ['BTC', 'AITBC'] };
const B = { id: 'backup', url: 'https://wallet.example.com', token: 'tb', currencies: ['BTC'], priority: 5, weight: 3 };

const providers = (list: unknown[]): ProviderConfig[] => parseProviders(JSON.stringify(list), currencies, local);

describe('parseProviders (PAYMENT_PROVIDERS)', () => {
  it('unset or blank: the one provider `local` at WALLET_DAEMON_URL, for every configured currency', () => {
    for (const raw of [undefined, '', '  ']) {
      const [only, ...rest] = parseProviders(raw, currencies, local);
      expect(rest).toEqual([]);
      expect(only).toMatchObject({ id: 'local', ...local, currencies: ['BTC', 'AITBC'], priority: 100, weight: 1 });
      expect(only.maxAmount.size).toBe(0);
    }
  });

  it('reads every field, with defaults for priority (100), weight (1) and max_amount (none)', () => {
    const [a, b] = providers([A, { ...B, max_amount: { BTC: '10.5' } }]);
    expect(a).toMatchObject({ ...A, priority: 100, weight: 1 });
    expect(b).toMatchObject({ id: 'backup', priority: 5, weight: 3, currencies: ['BTC'] });
    expect(b.maxAmount.get('BTC')?.toFixed()).toBe('10.5');
  });

  it('reads @path/to/file.json', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'providers-')), 'providers.json');
    writeFileSync(file, JSON.stringify([A, B]));
    expect(parseProviders(`@${file}`, currencies, local).map((p) => p.id)).toEqual(['primary', 'backup']);
    expect(() => parseProviders('@/nonexistent/providers.json', currencies, local)).toThrow(
      'PAYMENT_PROVIDERS: cannot read /nonexistent/providers.json (ENOENT)',
    );
  });

  it.each([
    ['not json', 'PAYMENT_PROVIDERS: not valid JSON'],
    ['[]', 'must be a non-empty JSON array'],
    ['{}', 'must be a non-empty JSON array'],
    [JSON.stringify([1]), 'PAYMENT_PROVIDERS[0]: must be an object'],
    [JSON.stringify([{ ...A, id: 'Primary' }]), 'PAYMENT_PROVIDERS[0].id: must match'],
    [JSON.stringify([{ ...A, id: '' }]), 'PAYMENT_PROVIDERS[0].id: must match'],
    [JSON.stringify([A, { ...B, id: 'primary' }]), 'PAYMENT_PROVIDERS[1].id: duplicate provider "primary"'],
    [JSON.stringify([{ ...A, url: 'ftp://x' }]), 'PAYMENT_PROVIDERS[0].url: must be an http(s) URL'],
    [JSON.stringify([{ ...A, url: 'nope' }]), 'PAYMENT_PROVIDERS[0].url: must be an http(s) URL'],
    [JSON.stringify([{ ...A, token: '' }]), 'PAYMENT_PROVIDERS[0].token: required'],
    [JSON.stringify([{ ...A, token: undefined }]), 'PAYMENT_PROVIDERS[0].token: required'],
    [JSON.stringify([{ ...A, currencies: [] }]), 'currencies: must be a non-empty array'],
    [JSON.stringify([{ ...A, currencies: ['ETH'] }]), 'currencies: "ETH" is not one of CURRENCIES (BTC, AITBC)'],
    [JSON.stringify([{ ...A, currencies: ['BTC', 'BTC'] }]), 'currencies: lists a currency twice'],
    [JSON.stringify([{ ...A, priority: -1 }]), 'priority: must be a whole number from 0 to 1000000'],
    [JSON.stringify([{ ...A, priority: 1.5 }]), 'priority: must be a whole number'],
    [JSON.stringify([{ ...A, weight: '2' }]), 'weight: must be a whole number from 0 to 1000000'],
    [JSON.stringify([{ ...A, max_amount: { BTC: 10 } }]), 'max_amount.BTC: must be a plain decimal string'],
    [JSON.stringify([{ ...A, max_amount: { BTC: '1e3' } }]), 'max_amount.BTC: must be a plain decimal string'],
    [JSON.stringify([{ ...A, max_amount: { BTC: '0' } }]), 'max_amount.BTC: must be greater than zero'],
    [JSON.stringify([{ ...A, max_amount: { BTC: '0.000000001' } }]), 'max_amount.BTC: has more than 8 decimal places'],
    [JSON.stringify([{ ...B, max_amount: { AITBC: '1' } }]), "max_amount.AITBC: not one of this provider's currencies"],
    [JSON.stringify([{ ...A, extra: 1 }]), 'PAYMENT_PROVIDERS[0]: unknown field extra'],
  ])('refuses %s', (raw, message) => {
    expect(() => parseProviders(raw, currencies, local)).toThrow(message);
  });

  it('never echoes a token in an error', () => {
    const secret = 'super-secret-token-value';
    for (const raw of [`[{"token": "${secret}"`, JSON.stringify([{ ...A, token: secret, url: 'bad' }])]) {
      expect(() => parseProviders(raw, currencies, local)).toThrow();
      try {
        parseProviders(raw, currencies, local);
      } catch (error) {
        expect((error as Error).message).not.toContain(secret);
      }
    }
  });
});

describe('parseRouting (PAYMENT_ROUTING)', () => {
  const list = providers([A, B]);

  it('unset, blank or a strategy name: no rules and that default', () => {
    expect(parseRouting(undefined, list, currencies)).toEqual({ rules: [], default: 'priority' });
    expect(parseRouting(' ', list, currencies)).toEqual({ rules: [], default: 'priority' });
    expect(parseRouting('priority', list, currencies)).toEqual({ rules: [], default: 'priority' });
    expect(parseRouting('volume_split', list, currencies)).toEqual({ rules: [], default: 'volume_split' });
  });

  it('reads rules with every condition, in order, and the default', () => {
    const routing = parseRouting(
      JSON.stringify({
        rules: [
          { when: { currency: 'BTC', amount_gte: '1', amount_lt: '10' }, use: ['backup', 'primary'] },
          { when: { client_id: 'client-7' }, use: ['primary'] },
          { when: {}, use: ['backup'] },
        ],
        default: 'volume_split',
      }),
      list,
      currencies,
    );
    expect(routing.default).toBe('volume_split');
    expect(routing.rules).toHaveLength(3);
    expect(routing.rules[0].use).toEqual(['backup', 'primary']);
    expect(routing.rules[0].when.currency).toBe('BTC');
    expect(routing.rules[0].when.amountGte?.toFixed()).toBe('1');
    expect(routing.rules[0].when.amountLt?.toFixed()).toBe('10');
    expect(routing.rules[1].when).toMatchObject({ clientId: 'client-7' });
    expect(parseRouting('{"rules": []}', list, currencies).default).toBe('priority');
  });

  it.each([
    ['round_robin', 'PAYMENT_ROUTING: must be priority, volume_split or a JSON rules object'],
    ['{', 'PAYMENT_ROUTING: not valid JSON'],
    ['{"rules": {}}', 'PAYMENT_ROUTING.rules: must be an array'],
    ['{"rules": [], "default": "random"}', 'PAYMENT_ROUTING.default: must be priority or volume_split'],
    ['{"rules": [], "fallback": "priority"}', 'PAYMENT_ROUTING: unknown field fallback'],
    ['{"rules": [{"use": ["primary"]}]}', 'PAYMENT_ROUTING.rules[0].when: must be an object'],
    ['{"rules": [{"when": {"size": 1}, "use": ["primary"]}]}', 'PAYMENT_ROUTING.rules[0].when: unknown field size'],
    ['{"rules": [{"when": {"currency": "ETH"}, "use": ["primary"]}]}', 'when.currency: must be one of CURRENCIES'],
    ['{"rules": [{"when": {"amount_gte": 1}, "use": ["primary"]}]}', 'when.amount_gte: must be a plain decimal string'],
    [
      '{"rules": [{"when": {"amount_lt": "-1"}, "use": ["primary"]}]}',
      'when.amount_lt: must be a plain decimal string',
    ],
    [
      '{"rules": [{"when": {"amount_gte": "5", "amount_lt": "5"}, "use": ["primary"]}]}',
      'amount_gte must be below amount_lt',
    ],
    ['{"rules": [{"when": {"client_id": ""}, "use": ["primary"]}]}', 'when.client_id: must be a non-empty string'],
    ['{"rules": [{"when": {}, "use": []}]}', 'use: must be a non-empty array of provider ids'],
    ['{"rules": [{"when": {}, "use": ["elsewhere"]}]}', 'use: "elsewhere" is not a provider'],
    ['{"rules": [{"when": {}, "use": ["primary", "primary"]}]}', 'use: lists a provider twice'],
  ])('refuses %s', (raw, message) => {
    expect(() => parseRouting(raw, list, currencies)).toThrow(message);
  });
});

describe('loadConfig: providers, routing and breaker settings', () => {
  it('defaults: `local` from WALLET_DAEMON_URL/TOKEN, priority, 5 failures, 10 s cooldown', () => {
    const config = loadConfig({ WALLET_DAEMON_URL: 'http://127.0.0.1:1', WALLET_DAEMON_TOKEN: 't' });
    expect(config.paymentProviders.map((p) => [p.id, p.url, p.token])).toEqual([['local', 'http://127.0.0.1:1', 't']]);
    expect(config.paymentRouting).toEqual({ rules: [], default: 'priority' });
    expect(config.providerBreakerFailures).toBe(5);
    expect(config.providerBreakerCooldownMs).toBe(10_000);
  });

  it('stops the boot naming the variable', () => {
    expect(() => loadConfig({ PAYMENT_PROVIDERS: '[]' })).toThrow('PAYMENT_PROVIDERS: must be a non-empty JSON array');
    expect(() => loadConfig({ PAYMENT_ROUTING: 'fastest' })).toThrow('PAYMENT_ROUTING: must be');
    expect(() => loadConfig({ PROVIDER_BREAKER_FAILURES: '0' })).toThrow('PROVIDER_BREAKER_FAILURES: 0 is outside');
    expect(() => loadConfig({ PROVIDER_BREAKER_COOLDOWN_MS: 'x' })).toThrow('PROVIDER_BREAKER_COOLDOWN_MS');
  });
});
