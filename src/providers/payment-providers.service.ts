import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { DomainError } from '../common/errors';
import { Money } from '../common/money';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { MetricsService } from '../metrics/metrics.service';
import { HttpWalletDaemonClient } from '../wallet-daemon-client/http-wallet-daemon.client';
import {
  WalletDaemonClient,
  WalletDaemonRejected,
  WalletDaemonUnavailable,
  WalletDaemonUnreachable,
} from '../wallet-daemon-client/wallet-daemon.client';
import {
  BreakerSettings,
  CLOSED,
  CircuitState,
  circuitState,
  stateGaugeValue,
  successChangesState,
} from './circuit-breaker';
import type { ProviderConfig } from './provider-config';
import { ProviderStateRepository, ProviderStateRow } from './provider-state.repository';
import { candidates, failoverCandidates, ProviderStanding, RoutedPayment, WeightedRoundRobin } from './routing';

/** What routing needs of a payment (a row, or terms about to become one). */
export interface PaymentToRoute {
  currency: string;
  amount: string;
  client_id: string;
}

/** A provider as the admin route shows it (counters as this instance's database row has them). */
export interface ProviderStatus {
  config: ProviderConfig;
  state: CircuitState;
  draining: boolean;
  calls: string;
  failures: string;
}

/**
 * The payment providers (wallet daemons): one client per provider, routing of new
 * payments, and each provider's circuit breaker (README "Providers and routing").
 *
 * Cost on the hot path: the breaker and drain state are shared through `provider_state`,
 * but an instance reads them from a copy it reloads at most every
 * PROVIDER_STATE_REFRESH_MS, in the background, together with adding its call count. A
 * healthy call therefore costs no database round trip: a row is written only on a
 * failure, on a transition (open, probe, closed) and on drain/resume. The price is that
 * another instance's changes reach this one within that interval.
 */
@Injectable()
export class PaymentProviders implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Providers');
  private readonly providers: readonly ProviderConfig[];
  private readonly byId: ReadonlyMap<string, ProviderConfig>;
  private readonly clients = new Map<string, WalletDaemonClient>();
  private readonly settings: BreakerSettings;
  private readonly split = new WeightedRoundRobin();
  /** This instance's copy of each provider's shared row. */
  private readonly rows = new Map<string, ProviderStateRow>();
  /** Calls made since the last flush, added to the shared counters with the next refresh. */
  private readonly unflushedCalls = new Map<string, number>();
  private loadedAt = 0;
  private refreshing: Promise<void> | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: MetricsService,
    private readonly tx: Transactions,
    private readonly state: ProviderStateRepository,
  ) {
    this.providers = config.paymentProviders;
    this.byId = new Map(this.providers.map((p) => [p.id, p]));
    this.settings = { failures: config.providerBreakerFailures, cooldownMs: config.providerBreakerCooldownMs };
    for (const provider of this.providers) {
      this.clients.set(
        provider.id,
        new HttpWalletDaemonClient(
          { ...config, walletDaemonUrl: provider.url, walletDaemonToken: provider.token },
          metrics,
        ),
      );
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.refresh();
  }

  async onModuleDestroy(): Promise<void> {
    // Keep the last calls counted: the shared counters survive this instance.
    await this.refresh();
  }

  /** Provider ids in configuration order. */
  ids(): string[] {
    return this.providers.map((p) => p.id);
  }

  has(providerId: string): boolean {
    return this.byId.has(providerId);
  }

  /**
   * The provider a new payment's escrow is requested from. Throws 503
   * NO_PROVIDER_AVAILABLE when no provider may take it (none serves the currency at that
   * amount, or every one that does is draining or has its circuit open): nothing is
   * written, as for any request refused before its payment exists.
   */
  route(payment: PaymentToRoute): string {
    this.refreshIfStale();
    const routed = toRouted(payment);
    const [chosen] = candidates(this.config.paymentRouting, this.providers, this.standingAt(), routed, this.split);
    if (!chosen) throw noProvider(routed);
    return chosen.id;
  }

  /**
   * Where an escrow creation that certainly reached none of `tried` goes next: the next
   * eligible provider in the failover order (the matching rule's list, else priority),
   * or undefined when there is none.
   */
  failoverTarget(payment: PaymentToRoute, tried: ReadonlySet<string>): string | undefined {
    const order = failoverCandidates(this.config.paymentRouting, this.providers, this.standingAt(), toRouted(payment));
    return order.find((p) => !tried.has(p.id))?.id;
  }

  /**
   * One call to the provider's wallet daemon, through its circuit breaker. An open circuit
   * throws WalletDaemonUnreachable without sending anything; a half-open one lets one probe
   * through (claimed in the database, so one for all instances). Any answer (a 4xx
   * refusal too) counts as the provider being up; no answer counts as a failure.
   */
  async call<T>(providerId: string, call: string, send: (daemon: WalletDaemonClient) => Promise<T>): Promise<T> {
    const client = this.clients.get(providerId);
    // A payment at a provider no longer configured waits (fail closed) until it is configured again.
    if (!client) throw new WalletDaemonUnavailable(`payment provider ${providerId} is not configured`);
    this.refreshIfStale();
    await this.admit(providerId, call);
    this.unflushedCalls.set(providerId, (this.unflushedCalls.get(providerId) ?? 0) + 1);
    const timer = this.metrics.providerLatency.startTimer({ provider: providerId, call });
    try {
      const answer = await send(client);
      this.metrics.providerCalls.inc({ provider: providerId, call, outcome: 'ok' });
      await this.succeeded(providerId);
      return answer;
    } catch (error) {
      if (error instanceof WalletDaemonRejected) {
        this.metrics.providerCalls.inc({ provider: providerId, call, outcome: 'rejected' });
        await this.succeeded(providerId);
      } else if (error instanceof WalletDaemonUnavailable) {
        const outcome = error instanceof WalletDaemonUnreachable ? 'unreachable' : 'unavailable';
        this.metrics.providerCalls.inc({ provider: providerId, call, outcome });
        await this.failed(providerId);
      }
      throw error;
    } finally {
      timer();
    }
  }

  /** Every provider with its shared state, read fresh (admin route). */
  async status(): Promise<ProviderStatus[]> {
    await this.refresh();
    const now = new Date();
    return this.providers.map((config) => {
      const row = this.rows.get(config.id);
      return {
        config,
        state: circuitState(row ?? CLOSED, now, this.settings),
        draining: row?.draining ?? false,
        calls: row?.calls ?? '0',
        failures: row?.failures ?? '0',
      };
    });
  }

  /** Drain (no new escrows; existing ones settle there) or resume. Unknown provider: undefined. */
  async setDraining(providerId: string, draining: boolean): Promise<ProviderStatus | undefined> {
    if (!this.byId.has(providerId)) return undefined;
    this.keep(await this.state.setDraining(this.tx.sql, providerId, draining));
    this.logger.log({ provider: providerId, draining }, draining ? 'provider draining' : 'provider resumed');
    return (await this.status()).find((s) => s.config.id === providerId);
  }

  /** The client of one provider (health checks). */
  client(providerId: string): WalletDaemonClient | undefined {
    return this.clients.get(providerId);
  }

  /** Each provider's standing now, from this instance's copy of the shared rows. */
  private standingAt(now = new Date()): (id: string) => ProviderStanding {
    return (id) => {
      const row = this.rows.get(id);
      return {
        draining: row?.draining ?? false,
        open: circuitState(row ?? CLOSED, now, this.settings) === 'open',
      };
    };
  }

  /** Lets a call through the breaker, or throws WalletDaemonUnreachable (nothing sent). */
  private async admit(providerId: string, call: string): Promise<void> {
    const row = this.rows.get(providerId) ?? CLOSED;
    const state = circuitState(row, new Date(), this.settings);
    if (state === 'closed') return;
    if (state === 'half_open') {
      const probe = await this.state.claimProbe(this.tx.sql, providerId, this.settings.cooldownMs);
      if (probe) {
        this.keep(probe);
        this.logger.log({ provider: providerId, call }, 'circuit half-open: probing the provider');
        return;
      }
      // Lost the probe, or another instance already closed the circuit: look again.
      const [fresh] = await this.state.findAll(this.tx.sql, [providerId]);
      if (fresh) this.keep(fresh);
      if (circuitState(fresh ?? CLOSED, new Date(), this.settings) === 'closed') return;
    }
    this.metrics.providerCalls.inc({ provider: providerId, call, outcome: 'circuit_open' });
    throw new WalletDaemonUnreachable(`payment provider ${providerId}: circuit open, nothing sent`);
  }

  private async succeeded(providerId: string): Promise<void> {
    const row = this.rows.get(providerId);
    if (!row || !successChangesState(row)) return;
    const closed = await this.state.recordSuccess(this.tx.sql, providerId).catch((error: unknown) => {
      this.logger.warn({ provider: providerId, err: error }, 'could not record the provider as healthy');
      return undefined;
    });
    this.keep(closed ?? { ...row, ...CLOSED });
    if (row.opened_at) this.logger.log({ provider: providerId }, 'circuit closed: the provider answers again');
  }

  private async failed(providerId: string): Promise<void> {
    this.metrics.providerFailures.inc({ provider: providerId });
    const before = this.rows.get(providerId);
    const row = await this.state
      .recordFailure(this.tx.sql, providerId, this.settings.failures)
      .catch((error: unknown) => {
        this.logger.warn({ provider: providerId, err: error }, 'could not record the provider failure');
        return undefined;
      });
    if (!row) return;
    this.keep(row);
    if (row.opened_at && !before?.opened_at) {
      this.logger.warn(
        { provider: providerId, consecutive_failures: row.consecutive_failures },
        'circuit open: no calls to the provider until its cooldown has passed',
      );
    }
  }

  private keep(row: ProviderStateRow | undefined): void {
    if (!row) return;
    // A reload that read the row before this instance's own newer write must not undo it.
    const held = this.rows.get(row.provider_id);
    if (held && held.updated_at > row.updated_at) return;
    this.rows.set(row.provider_id, row);
    this.metrics.providerCircuitState.set(
      { provider: row.provider_id },
      stateGaugeValue(circuitState(row, new Date(), this.settings)),
    );
  }

  private refreshIfStale(): void {
    if (Date.now() - this.loadedAt < this.config.providerStateRefreshMs) return;
    void this.refresh();
  }

  /** Adds this instance's call counts and reloads every provider's row (one flight at a time). */
  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      const counts = [...this.unflushedCalls].map(([providerId, calls]) => ({ providerId, calls }));
      let flushed = false;
      try {
        this.unflushedCalls.clear();
        if (counts.length > 0) await this.state.addCalls(this.tx.sql, counts);
        flushed = true;
        const rows = await this.state.findAll(this.tx.sql, this.ids());
        for (const id of this.ids()) {
          const row = rows.find((r) => r.provider_id === id);
          if (row) this.keep(row);
          else this.metrics.providerCircuitState.set({ provider: id }, 0);
        }
        this.loadedAt = Date.now();
      } catch (error: unknown) {
        // The copy stays as it was; the next refresh tries again (counts included).
        const unsent: typeof counts = flushed ? [] : counts;
        for (const { providerId, calls } of unsent)
          this.unflushedCalls.set(providerId, (this.unflushedCalls.get(providerId) ?? 0) + calls);
        this.logger.warn({ err: error }, 'could not reload the provider state');
        this.loadedAt = Date.now();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }
}

function toRouted(payment: PaymentToRoute): RoutedPayment {
  return { currency: payment.currency, amount: new Money(payment.amount), clientId: payment.client_id };
}

function noProvider(payment: RoutedPayment): DomainError {
  return new DomainError(
    'NO_PROVIDER_AVAILABLE',
    `No payment provider can hold ${payment.amount.toFixed()} ${payment.currency} now (none serves it at this amount, or every one that does is draining or failing); nothing was created`,
    { currency: payment.currency },
  );
}
