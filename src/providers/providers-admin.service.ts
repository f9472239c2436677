import { Inject, Injectable } from '@nestjs/common';
import { DomainError } from '../common/errors';
import { formatAmount } from '../common/money';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { PaymentsService } from '../payments/payments.service';
import type { ProviderListView, ProviderView } from './dto/provider.dto';
import { PaymentProviders, ProviderStatus } from './payment-providers.service';

/** The admin routes: each provider's shared state, with what Payments holds there. */
@Injectable()
export class ProvidersAdminService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly providers: PaymentProviders,
    private readonly payments: PaymentsService,
  ) {}

  async list(): Promise<ProviderListView> {
    const [statuses, held] = await Promise.all([this.providers.status(), this.payments.heldByProvider()]);
    return { items: statuses.map((s) => this.view(s, held)) };
  }

  async setDraining(providerId: string, draining: boolean): Promise<ProviderView> {
    const status = await this.providers.setDraining(providerId, draining);
    if (!status) throw new DomainError('PROVIDER_NOT_FOUND', `payment provider ${providerId} not found`);
    return this.view(status, await this.payments.heldByProvider());
  }

  private view(status: ProviderStatus, held: { provider_id: string; currency: string; held: string }[]): ProviderView {
    const { config } = status;
    const scale = (currency: string) => this.config.currencies.get(currency)?.scale ?? 8;
    const holdings: Record<string, string> = {};
    for (const currency of config.currencies) holdings[currency] = formatAmount('0', scale(currency));
    for (const row of held.filter((h) => h.provider_id === config.id))
      holdings[row.currency] = formatAmount(row.held, scale(row.currency));
    return {
      id: config.id,
      currencies: config.currencies,
      priority: config.priority,
      weight: config.weight,
      max_amount: Object.fromEntries(
        [...config.maxAmount].map(([currency, limit]) => [currency, formatAmount(limit, scale(currency))]),
      ),
      state: status.state,
      draining: status.draining,
      calls: status.calls,
      failures: status.failures,
      held: holdings,
    };
  }
}
