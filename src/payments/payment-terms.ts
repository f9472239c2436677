import { isValidAddress } from '../common/addresses';
import type { CurrencyConfig } from '../common/currencies';
import { DomainError } from '../common/errors';
import { AmountError, formatAmount, parseAmount } from '../common/money';
import type { AppConfig } from '../config/app-config';
import type { Principal } from '../auth/api-keys';

/** What a client asks to pay, as it arrives (from POST /v1/jobs or POST /v1/payments). */
export interface PaymentRequest {
  amount: unknown;
  currency?: string;
  payer_address?: string;
  refund_address?: string;
  escrow_timeout_seconds?: number;
}

/** Validated, exact terms of a payment; nothing is written until these exist. */
export interface PaymentTerms {
  amount: string;
  currency: CurrencyConfig;
  payerAddress: string;
  refundAddress: string;
  escrowTimeoutSeconds: number;
  /** The provider routing chose (set by PaymentCreation.prepareTerms, before anything is written). */
  providerId?: string;
}

/**
 * The payment input rules in one place: amount grammar and limits per currency,
 * configured currencies only, addresses valid for the currency (checksum included),
 * payer defaulting to the client's wallet, refund defaulting to the payer, and the
 * escrow timeout within the operator's bounds. `fieldPrefix` names fields as the
 * caller's body does (`payment_` on POST /v1/jobs).
 */
export function preparePaymentTerms(
  config: AppConfig,
  principal: Principal,
  request: PaymentRequest,
  fieldPrefix = '',
): PaymentTerms {
  const currencyField = `${fieldPrefix}currency`;
  const code = request.currency ?? config.defaultCurrency;
  const currency = config.currencies.get(code);
  if (!currency) {
    throw new DomainError('UNSUPPORTED_CURRENCY', `Currency ${code} is not supported`, {
      fields: { [currencyField]: [`must be one of ${[...config.currencies.keys()].join(', ')}`] },
    });
  }

  let amount: string;
  try {
    amount = formatAmount(parseAmount(request.amount, currency), 8);
  } catch (error) {
    if (!(error instanceof AmountError)) throw error;
    throw new DomainError('INVALID_AMOUNT', error.message, {
      fields: { [`${fieldPrefix}amount`]: [error.message] },
      reason: error.reason,
      minimum: formatAmount(currency.min, currency.scale),
      maximum: formatAmount(currency.max, currency.scale),
    });
  }

  const payerAddress = request.payer_address ?? principal.walletAddress;
  if (!payerAddress) {
    throw new DomainError(
      'PAYER_ADDRESS_REQUIRED',
      'payer_address is required: no wallet address is configured for this client',
      {
        fields: { payer_address: ['required'] },
      },
    );
  }
  const refundAddress = request.refund_address ?? payerAddress;
  for (const [field, address] of [
    ['payer_address', payerAddress],
    ['refund_address', refundAddress],
  ] as const) {
    if (!isValidAddress(address, currency.addressFormat, currency.network)) {
      throw new DomainError('INVALID_ADDRESS', `${field} is not a valid ${currency.code} ${currency.network} address`, {
        fields: { [field]: [`not a valid ${currency.code} ${currency.network} address`] },
      });
    }
  }

  const escrowTimeoutSeconds = request.escrow_timeout_seconds ?? config.escrowTimeoutSeconds;
  if (escrowTimeoutSeconds < config.escrowMinTimeoutSeconds || escrowTimeoutSeconds > config.escrowMaxTimeoutSeconds) {
    throw new DomainError(
      'ESCROW_TIMEOUT_OUT_OF_RANGE',
      `escrow_timeout_seconds must be within ${config.escrowMinTimeoutSeconds}..${config.escrowMaxTimeoutSeconds}`,
      {
        fields: {
          escrow_timeout_seconds: [
            `must be within ${config.escrowMinTimeoutSeconds}..${config.escrowMaxTimeoutSeconds}`,
          ],
        },
      },
    );
  }
  return { amount, currency, payerAddress, refundAddress, escrowTimeoutSeconds };
}
