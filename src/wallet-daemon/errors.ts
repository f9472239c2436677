/** Stable error codes of the wallet daemon's HTTP contract, with their statuses. */
export const WALLET_ERROR_STATUS = {
  INVALID_REQUEST: 400,
  UNAUTHORIZED: 401,
  INSUFFICIENT_FUNDS: 402,
  ESCROW_NOT_FOUND: 404,
  NOT_FOUND: 404,
  ESCROW_NOT_HELD: 409,
  ESCROW_MISMATCH: 409,
  IDEMPOTENCY_KEY_REUSED: 409,
  INTERNAL: 500,
  FAULT_INJECTED: 503,
} as const;

export type WalletErrorCode = keyof typeof WALLET_ERROR_STATUS;

/** The one error body shape: `{ code, message }`. */
export interface WalletErrorBody {
  code: WalletErrorCode;
  message: string;
}

export class WalletDaemonError extends Error {
  constructor(
    readonly code: WalletErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WalletDaemonError';
  }

  get status(): number {
    return WALLET_ERROR_STATUS[this.code];
  }

  toBody(): WalletErrorBody {
    return { code: this.code, message: this.message };
  }
}

export function escrowNotFound(escrowId: string): WalletDaemonError {
  return new WalletDaemonError('ESCROW_NOT_FOUND', `no escrow ${escrowId}`);
}

export function invalidRequest(message: string): WalletDaemonError {
  return new WalletDaemonError('INVALID_REQUEST', message);
}
