import { readFileSync } from 'node:fs';
import type { Decimal } from 'decimal.js';
import type { CurrencyConfig } from '../common/currencies';
import { Money } from '../common/money';

/**
 * The wallet daemons payments are held at ("payment providers") and how a new payment
 * picks one (README "Providers and routing"). Parsed once at boot from
 * `PAYMENT_PROVIDERS` and `PAYMENT_ROUTING`; a bad value throws an Error naming the
 * variable and never echoes a token.
 */
export interface ProviderConfig {
  id: string;
  /** Undefined only for the implicit `local` provider before `npm start` has spawned its daemon. */
  url: string | undefined;
  token: string | undefined;
  /** Currency codes this provider holds, each one of CURRENCIES. */
  currencies: string[];
  /** Lower is preferred; ties keep the order of PAYMENT_PROVIDERS. */
  priority: number;
  /** Share of new payments under `volume_split` (0 = never chosen by the split). */
  weight: number;
  /** Largest single payment per currency, exact (a currency not listed: the currency's own maximum). */
  maxAmount: ReadonlyMap<string, Decimal>;
}

export type RoutingStrategy = 'priority' | 'volume_split';

/** What a rule looks at; every given field must match (amounts exact, `amount_gte` ≤ amount < `amount_lt`). */
export interface RoutingCondition {
  currency?: string;
  amountGte?: Decimal;
  amountLt?: Decimal;
  clientId?: string;
}

export interface RoutingRule {
  when: RoutingCondition;
  /** Provider ids tried in this order; the first eligible one is chosen. */
  use: string[];
}

export interface RoutingConfig {
  /** The first rule whose condition matches decides; no rule matches: `default`. */
  rules: RoutingRule[];
  default: RoutingStrategy;
}

/** The provider used when PAYMENT_PROVIDERS is unset: the one daemon of WALLET_DAEMON_URL. */
export const LOCAL_PROVIDER_ID = 'local';

const ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const DECIMAL = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
const STRATEGIES: readonly RoutingStrategy[] = ['priority', 'volume_split'];
const DEFAULT_PRIORITY = 100;
const MAX_WEIGHT = 1_000_000;

/**
 * `PAYMENT_PROVIDERS`: a JSON array (or `@path/to/file.json`) of `{"id", "url", "token",
 * "currencies", "priority"?, "weight"?, "max_amount"?}`. Unset or blank: the single provider
 * `local` at WALLET_DAEMON_URL, for every configured currency.
 */
export function parseProviders(
  raw: string | undefined,
  currencies: ReadonlyMap<string, CurrencyConfig>,
  local: { url: string | undefined; token: string | undefined },
): ProviderConfig[] {
  const name = 'PAYMENT_PROVIDERS';
  if (raw === undefined || raw.trim() === '') {
    return [
      {
        id: LOCAL_PROVIDER_ID,
        url: local.url,
        token: local.token,
        currencies: [...currencies.keys()],
        priority: DEFAULT_PRIORITY,
        weight: 1,
        maxAmount: new Map(),
      },
    ];
  }
  const list = readJson(name, raw);
  if (!Array.isArray(list) || list.length === 0) throw new Error(`${name}: must be a non-empty JSON array`);
  const seen = new Set<string>();
  return list.map((entry: unknown, index) => {
    const at = `${name}[${index}]`;
    if (!isObject(entry)) throw new Error(`${at}: must be an object`);
    onlyKeys(at, entry, ['id', 'url', 'token', 'currencies', 'priority', 'weight', 'max_amount']);
    const { id, url, token } = entry;
    if (typeof id !== 'string' || !ID.test(id)) throw new Error(`${at}.id: must match ${ID.source}`);
    if (seen.has(id)) throw new Error(`${at}.id: duplicate provider "${id}"`);
    seen.add(id);
    if (typeof url !== 'string' || !isHttpUrl(url)) throw new Error(`${at}.url: must be an http(s) URL`);
    if (typeof token !== 'string' || token === '') throw new Error(`${at}.token: required (a non-empty string)`);
    const served = entry.currencies;
    if (!Array.isArray(served) || served.length === 0) throw new Error(`${at}.currencies: must be a non-empty array`);
    for (const code of served) {
      if (typeof code !== 'string' || !currencies.has(code))
        throw new Error(
          `${at}.currencies: "${String(code)}" is not one of CURRENCIES (${[...currencies.keys()].join(', ')})`,
        );
    }
    if (new Set(served).size !== served.length) throw new Error(`${at}.currencies: lists a currency twice`);
    return {
      id,
      url,
      token,
      currencies: served as string[],
      priority: wholeNumber(`${at}.priority`, entry.priority, DEFAULT_PRIORITY, 0, 1_000_000),
      weight: wholeNumber(`${at}.weight`, entry.weight, 1, 0, MAX_WEIGHT),
      maxAmount: maxAmounts(`${at}.max_amount`, entry.max_amount, served as string[], currencies),
    };
  });
}

/**
 * `PAYMENT_ROUTING`: `priority` (the default), `volume_split`, or a JSON rules object (or
 * `@path/to/file.json`) `{"rules": [{"when": {...}, "use": [...]}], "default"?}`.
 */
export function parseRouting(
  raw: string | undefined,
  providers: readonly ProviderConfig[],
  currencies: ReadonlyMap<string, CurrencyConfig>,
): RoutingConfig {
  const name = 'PAYMENT_ROUTING';
  const text = raw?.trim() ?? '';
  if (text === '') return { rules: [], default: 'priority' };
  if ((STRATEGIES as readonly string[]).includes(text)) return { rules: [], default: text as RoutingStrategy };
  if (!text.startsWith('{') && !text.startsWith('@'))
    throw new Error(`${name}: must be priority, volume_split or a JSON rules object`);
  const body = readJson(name, text);
  if (!isObject(body)) throw new Error(`${name}: must be a JSON object`);
  onlyKeys(name, body, ['rules', 'default']);
  const fallback = body.default ?? 'priority';
  if (typeof fallback !== 'string' || !(STRATEGIES as readonly string[]).includes(fallback))
    throw new Error(`${name}.default: must be priority or volume_split`);
  if (!Array.isArray(body.rules)) throw new Error(`${name}.rules: must be an array`);
  const ids = new Set(providers.map((p) => p.id));
  const rules = body.rules.map((rule: unknown, index): RoutingRule => {
    const at = `${name}.rules[${index}]`;
    if (!isObject(rule)) throw new Error(`${at}: must be an object`);
    onlyKeys(at, rule, ['when', 'use']);
    const { when, use } = rule;
    if (!isObject(when)) throw new Error(`${at}.when: must be an object`);
    onlyKeys(`${at}.when`, when, ['currency', 'amount_gte', 'amount_lt', 'client_id']);
    if (when.currency !== undefined && (typeof when.currency !== 'string' || !currencies.has(when.currency)))
      throw new Error(`${at}.when.currency: must be one of CURRENCIES`);
    if (when.client_id !== undefined && (typeof when.client_id !== 'string' || when.client_id === ''))
      throw new Error(`${at}.when.client_id: must be a non-empty string`);
    const amountGte = amountBound(`${at}.when.amount_gte`, when.amount_gte);
    const amountLt = amountBound(`${at}.when.amount_lt`, when.amount_lt);
    if (amountGte && amountLt && !amountGte.lt(amountLt))
      throw new Error(`${at}.when: amount_gte must be below amount_lt`);
    if (!Array.isArray(use) || use.length === 0)
      throw new Error(`${at}.use: must be a non-empty array of provider ids`);
    for (const id of use) {
      if (typeof id !== 'string' || !ids.has(id)) throw new Error(`${at}.use: "${String(id)}" is not a provider`);
    }
    if (new Set(use).size !== use.length) throw new Error(`${at}.use: lists a provider twice`);
    return {
      when: {
        currency: when.currency,
        clientId: when.client_id,
        amountGte,
        amountLt,
      },
      use: use as string[],
    };
  });
  return { rules, default: fallback as RoutingStrategy };
}

/** JSON text, or `@path` to a file holding it. */
function readJson(name: string, raw: string): unknown {
  const text = raw.trim();
  let source = text;
  if (text.startsWith('@')) {
    try {
      source = readFileSync(text.slice(1), 'utf8');
    } catch (error) {
      throw new Error(`${name}: cannot read ${text.slice(1)} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, {
        cause: error,
      });
    }
  }
  try {
    return JSON.parse(source) as unknown;
  } catch {
    // Never echo the text: it carries tokens.
    throw new Error(`${name}: not valid JSON`);
  }
}

function maxAmounts(
  at: string,
  value: unknown,
  served: string[],
  currencies: ReadonlyMap<string, CurrencyConfig>,
): Map<string, Decimal> {
  const limits = new Map<string, Decimal>();
  if (value === undefined) return limits;
  if (!isObject(value)) throw new Error(`${at}: must be an object of currency → decimal string`);
  for (const [code, text] of Object.entries(value)) {
    if (!served.includes(code)) throw new Error(`${at}.${code}: not one of this provider's currencies`);
    const currency = currencies.get(code) as CurrencyConfig;
    if (typeof text !== 'string' || !DECIMAL.test(text))
      throw new Error(`${at}.${code}: must be a plain decimal string such as "10"`);
    const limit = new Money(text);
    if (!limit.gt(0)) throw new Error(`${at}.${code}: must be greater than zero`);
    if (limit.decimalPlaces() > currency.scale)
      throw new Error(`${at}.${code}: has more than ${currency.scale} decimal places`);
    limits.set(code, limit);
  }
  return limits;
}

function amountBound(at: string, value: unknown): Decimal | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !DECIMAL.test(value)) throw new Error(`${at}: must be a plain decimal string`);
  return new Money(value);
}

function wholeNumber(at: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max)
    throw new Error(`${at}: must be a whole number from ${min} to ${max}`);
  return value as number;
}

function onlyKeys(at: string, value: Record<string, unknown>, allowed: string[]): void {
  const unknown = Object.keys(value).filter((key) => !allowed.includes(key));
  if (unknown.length > 0)
    throw new Error(`${at}: unknown field ${unknown.join(', ')} (allowed: ${allowed.join(', ')})`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
