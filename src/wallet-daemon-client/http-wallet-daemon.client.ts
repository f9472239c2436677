import { Inject, Injectable } from '@nestjs/common';
import axios, { AxiosError, AxiosInstance } from 'axios';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import {
  BatchItemResult,
  CreateBatchItem,
  CreateBatchResult,
  CreateEscrowRequest,
  EscrowHold,
  EscrowState,
  ExtendEscrowRequest,
  ReleaseRequest,
  SettleBatchItem,
  SettleBatchResult,
  SettleRequest,
  WalletDaemonClient,
  WalletDaemonRejected,
  WalletDaemonUnavailable,
  WalletDaemonUnreachable,
} from './wallet-daemon.client';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wallet daemon over HTTP: per-call timeout, retries with exponential backoff and jitter
 * for network errors and 5xx only (4xx answers are definitive), and an Idempotency-Key
 * on every POST so a retry can never apply twice.
 */
@Injectable()
export class HttpWalletDaemonClient extends WalletDaemonClient {
  private readonly http: AxiosInstance;
  private readonly retries: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    super();
    this.retries = config.walletDaemonRetries;
    this.http = axios.create({
      baseURL: config.walletDaemonUrl,
      timeout: config.walletDaemonTimeoutMs,
      headers: { authorization: `Bearer ${config.walletDaemonToken ?? ''}` },
      // Statuses are interpreted below, not thrown by axios.
      validateStatus: () => true,
    });
  }

  createEscrow(request: CreateEscrowRequest, idempotencyKey: string): Promise<EscrowHold> {
    return this.call('escrow_create', 'post', '/api/v1/escrow/create', request, idempotencyKey);
  }

  releaseEscrow(request: ReleaseRequest, idempotencyKey: string): Promise<{ transaction_hash: string }> {
    return this.call('escrow_release', 'post', '/api/v1/escrow/release', request, idempotencyKey);
  }

  refundEscrow(
    request: SettleRequest & { refund_address: string },
    idempotencyKey: string,
  ): Promise<{ transaction_hash: string }> {
    return this.call('escrow_refund', 'post', '/api/v1/refund', request, idempotencyKey);
  }

  settleEscrows(items: SettleBatchItem[]): Promise<SettleBatchResult[]> {
    return this.batch('escrow_settle_batch', '/api/v1/escrow/settle-batch', items);
  }

  createEscrows(items: CreateBatchItem[]): Promise<CreateBatchResult[]> {
    return this.batch('escrow_create_batch', '/api/v1/escrow/create-batch', items);
  }

  extendEscrow(request: ExtendEscrowRequest, idempotencyKey: string): Promise<{ expires_at: string }> {
    return this.call('escrow_extend', 'post', '/api/v1/escrow/extend', request, idempotencyKey);
  }

  getEscrow(escrowId: string): Promise<EscrowState> {
    return this.call('escrow_get', 'get', `/api/v1/escrow/${encodeURIComponent(escrowId)}`);
  }

  /** A read (nothing changes at the daemon), so no Idempotency-Key; retried like a GET. */
  async lookupEscrows(escrowIds: string[]): Promise<EscrowState[]> {
    const answer = await this.call<{ items?: EscrowState[] } | undefined>(
      'escrow_lookup',
      'post',
      '/api/v1/escrow/lookup',
      {
        escrow_ids: escrowIds,
      },
    );
    if (!Array.isArray(answer?.items)) throw new WalletDaemonUnavailable('wallet daemon lookup answered without items');
    return answer.items;
  }

  async ping(): Promise<void> {
    await this.call('health', 'get', '/health', undefined, undefined, 0);
  }

  /** A batch route: every item carries its own idempotency key, so the batch itself is safe to retry. */
  private async batch<R extends BatchItemResult<unknown>>(
    name: string,
    url: string,
    items: Array<{ idempotency_key: string }>,
  ): Promise<R[]> {
    const results = (await this.call<{ results?: R[] } | undefined>(name, 'post', url, { items }))?.results;
    // Anything but one result per item, in order, leaves every item's outcome unknown: retry later.
    if (
      !Array.isArray(results) ||
      results.length !== items.length ||
      results.some((r, i) => r?.idempotency_key !== items[i].idempotency_key)
    ) {
      throw new WalletDaemonUnavailable(`wallet daemon ${url} answered without one result per item`);
    }
    return results;
  }

  private async call<T>(
    name: string,
    method: 'get' | 'post',
    url: string,
    data?: unknown,
    idempotencyKey?: string,
    retries = this.retries,
  ): Promise<T> {
    // Whether any attempt may have reached the daemon: only a refused connection proves it did not.
    let mayHaveArrived = false;
    for (let attempt = 0; ; attempt++) {
      const started = process.hrtime.bigint();
      let outcome = 'ok';
      try {
        const response = await this.http.request({
          method,
          url,
          data,
          headers: idempotencyKey ? { 'idempotency-key': idempotencyKey } : undefined,
        });
        mayHaveArrived = true;
        if (response.status < 400) return response.data as T;
        const body = (response.data ?? {}) as { code?: string; message?: string };
        if (response.status < 500) {
          outcome = 'rejected';
          this.metrics.walletDaemonErrors.inc({ call: name, kind: `http_${response.status}` });
          throw new WalletDaemonRejected(
            response.status,
            body.code ?? 'REJECTED',
            body.message ?? `wallet daemon answered ${response.status}`,
          );
        }
        outcome = 'unavailable';
        this.metrics.walletDaemonErrors.inc({ call: name, kind: `http_${response.status}` });
        if (attempt >= retries) throw new WalletDaemonUnavailable(`wallet daemon ${name} answered ${response.status}`);
      } catch (error) {
        if (error instanceof WalletDaemonRejected || error instanceof WalletDaemonUnavailable) throw error;
        outcome = 'unavailable';
        const kind = (error as AxiosError).code ?? 'network';
        if (kind !== 'ECONNREFUSED') mayHaveArrived = true;
        this.metrics.walletDaemonErrors.inc({ call: name, kind });
        if (attempt >= retries) {
          const message = `wallet daemon ${name} unreachable (${kind})`;
          throw mayHaveArrived ? new WalletDaemonUnavailable(message) : new WalletDaemonUnreachable(message);
        }
      } finally {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        this.metrics.walletDaemonLatency.observe({ call: name, outcome }, seconds);
      }
      // Exponential backoff with full jitter: 50 ms, 100 ms, 200 ms… capped at 2 s.
      await sleep(Math.random() * Math.min(2000, 50 * 2 ** attempt));
    }
  }
}
