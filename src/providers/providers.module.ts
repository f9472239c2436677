import { Module } from '@nestjs/common';
import { PaymentProviders } from './payment-providers.service';
import { ProviderStateRepository } from './provider-state.repository';

/**
 * The payment providers (wallet daemons): their clients, routing and circuit breakers.
 * Below Escrow (Escrow → Providers → the wallet daemon client); its admin routes live in
 * ProvidersAdminModule, which also reads what Payments holds at each provider.
 */
@Module({
  providers: [PaymentProviders, ProviderStateRepository],
  exports: [PaymentProviders],
})
export class ProvidersModule {}
