import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
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

/** Headers every delivery carries besides the Standard Webhooks ones. */
const FIXED_HEADERS = { 'content-type': 'application/json', 'user-agent': 'coordinator-webhooks/1' };

/**
 * The HTTP side of a delivery: a POST with the Standard Webhooks headers, a 2xx within
 * the timeout is delivered, redirects are not followed (a 3xx is a failure), the answer's
 * body is read and dropped. The URL rule is applied to the address actually connected to:
 * IP literals are checked here, host names in the agents' DNS lookup, so a name that
 * resolves somewhere private by the time of the attempt is refused then.
 *
 * Node's own `http.request` on keep-alive agents, not axios: the delivering instance is
 * bound by its CPU per delivery, and axios' config merging and adapters were the largest
 * share of it (bench `--phases webhooks --profile`); none of what axios adds is used here.
 */
@Injectable()
export class WebhookSender implements OnModuleDestroy {
  private readonly agents: { 'http:': http.Agent; 'https:': https.Agent };

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    const lookup = guardedLookup(config.webhookAllowPrivateUrls);
    this.agents = {
      'http:': new http.Agent({ keepAlive: true, maxSockets: 256, lookup }),
      'https:': new https.Agent({ keepAlive: true, maxSockets: 256, lookup }),
    };
  }

  onModuleDestroy(): void {
    this.agents['http:'].destroy();
    this.agents['https:'].destroy();
  }

  /**
   * A deadline shared by a batch of attempts started together: one timer instead of one
   * per request (an AbortSignal each costs more CPU than the rest of the request). It
   * bounds the whole exchange, connection, request and answer.
   */
  deadline(): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    const timer = setTimeout(() => controller.abort(), this.config.webhookTimeoutMs);
    return { signal: controller.signal, done: () => clearTimeout(timer) };
  }

  async send(url: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<SendResult> {
    let target: URL;
    try {
      target = parseWebhookUrl(url);
    } catch (error) {
      return { ok: false, status_code: null, error: describe(error) };
    }
    const literal = hostAddress(target);
    if (literal && !this.config.webhookAllowPrivateUrls && !isPublicAddress(literal))
      return { ok: false, status_code: null, error: 'url is a loopback, private or link-local address' };
    try {
      const status = await this.post(target, headers, body, signal);
      const ok = status >= 200 && status < 300;
      return { ok, status_code: status, error: ok ? null : `answered ${status}` };
    } catch (error) {
      return { ok: false, status_code: null, error: describe(error) };
    }
  }

  /** The answer's status, once its body has been read (so the socket goes back to the pool). */
  private post(target: URL, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<number> {
    const secure = target.protocol === 'https:';
    const send = secure ? https.request : http.request;
    return new Promise<number>((resolve, reject) => {
      const request = send(
        target,
        {
          method: 'POST',
          agent: this.agents[secure ? 'https:' : 'http:'],
          headers: { ...headers, ...FIXED_HEADERS, 'content-length': Buffer.byteLength(body) },
          signal,
        },
        (response) => {
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            // An answer's body is not kept; one that will not end is cut off rather than drained forever.
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) response.destroy(new Error('answer body too large'));
          });
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', reject);
          response.on('close', () => {
            if (!response.complete) reject(new Error('connection closed before the answer ended'));
          });
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  }
}

/** Largest answer body read (and dropped) before the connection is cut. */
const MAX_ANSWER_BYTES = 64 * 1024;

function describe(error: unknown): string {
  const e = error as { code?: string; message?: string; name?: string };
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR' || e?.code === 'ETIMEDOUT') return 'timed out';
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
