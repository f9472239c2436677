import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import axios, { AxiosInstance } from 'axios';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { hostAddress, isPublicAddress, parseWebhookUrl } from './webhook-url';

export interface SendResult {
  ok: boolean;
  status_code: number | null;
  error: string | null;
}

/**
 * The HTTP side of a delivery: a POST with the Standard Webhooks headers, a 2xx within
 * the timeout is delivered, redirects are not followed (a 3xx is a failure), the answer's
 * body is not kept. The URL rule is applied to the address actually connected to: IP
 * literals are checked here, host names in the agents' DNS lookup, so a name that
 * resolves somewhere private by the time of the attempt is refused then.
 */
@Injectable()
export class WebhookSender implements OnModuleDestroy {
  private readonly http: AxiosInstance;
  private readonly agents: [http.Agent, https.Agent];

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    const lookup = guardedLookup(config.webhookAllowPrivateUrls);
    this.agents = [
      new http.Agent({ keepAlive: true, maxSockets: 256, lookup }),
      new https.Agent({ keepAlive: true, maxSockets: 256, lookup }),
    ];
    this.http = axios.create({
      timeout: config.webhookTimeoutMs,
      maxRedirects: 0,
      validateStatus: () => true,
      httpAgent: this.agents[0],
      httpsAgent: this.agents[1],
      // The body is sent as signed, byte for byte; the answer's body is not read into anything.
      transformRequest: [(data: unknown) => data],
      transformResponse: [() => undefined],
      maxContentLength: 64 * 1024,
      proxy: false,
    });
  }

  onModuleDestroy(): void {
    for (const agent of this.agents) agent.destroy();
  }

  /**
   * A deadline shared by a batch of attempts started together: one timer instead of one
   * per request (an AbortSignal each costs more CPU than the rest of the request).
   * axios' own `timeout` only bounds socket inactivity; this bounds the whole exchange.
   */
  deadline(): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    const timer = setTimeout(() => controller.abort(), this.config.webhookTimeoutMs);
    return { signal: controller.signal, done: () => clearTimeout(timer) };
  }

  async send(url: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<SendResult> {
    try {
      const target = parseWebhookUrl(url);
      const literal = hostAddress(target);
      if (literal && !this.config.webhookAllowPrivateUrls && !isPublicAddress(literal))
        return { ok: false, status_code: null, error: 'url is a loopback, private or link-local address' };
      const response = await this.http.post(url, body, {
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': 'coordinator-webhooks/1' },
        signal,
      });
      const ok = response.status >= 200 && response.status < 300;
      return { ok, status_code: response.status, error: ok ? null : `answered ${response.status}` };
    } catch (error) {
      return { ok: false, status_code: null, error: describe(error) };
    }
  }
}

function describe(error: unknown): string {
  const e = error as { code?: string; message?: string; name?: string };
  if (e?.name === 'CanceledError' || e?.name === 'AbortError' || e?.code === 'ECONNABORTED' || e?.code === 'ETIMEDOUT')
    return 'timed out';
  const text = e?.code ? `${e.code}: ${e.message ?? ''}` : (e?.message ?? String(error));
  return text.slice(0, 300);
}

type LookupCallback = (error: Error | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup that refuses non-public addresses unless they are allowed. */
export function guardedLookup(allowPrivate: boolean): LookupFunction {
  const lookup = (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      if (!allowPrivate && (addresses.length === 0 || !addresses.every((a) => isPublicAddress(a.address)))) {
        const refused = Object.assign(new Error(`${hostname} resolves to a loopback, private or link-local address`), {
          code: 'WEBHOOK_URL_NOT_ALLOWED',
        });
        return callback(refused, []);
      }
      if (options.all) return callback(null, addresses);
      return callback(null, addresses[0].address, addresses[0].family);
    });
  };
  return lookup;
}
