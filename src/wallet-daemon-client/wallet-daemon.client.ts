/**
 * The coordinator's view of the wallet daemon (docs/wallet-daemon.md).
 * An abstract class so it can be a DI token; the one implementation speaks HTTP.
 */
export interface EscrowHold {
  escrow_id: string;
  address: string;
  transaction_hash: string;
  expires_at: string;
}

export interface CreateEscrowRequest {
  payment_id: string;
  amount: string;
  currency: string;
  payer: string;
  timeout_seconds: number;
}

export interface SettleRequest {
  escrow_id: string;
  address: string;
  amount: string;
  reason: string;
}

export interface EscrowState {
  escrow_id: string;
  address: string;
  amount: string;
  currency: string;
  state: 'held' | 'released' | 'refunded';
  transaction_hash: string | null;
}

/**
 * One item of `POST /api/v1/escrow/settle-batch` (an extension of the single-escrow contract that
 * the local daemon implements): exactly the single release or refund call with that
 * idempotency key, so a retry either way replays it.
 */
export type SettleBatchItem = SettleRequest & { idempotency_key: string } & (
    { action: 'release'; payee: string } | { action: 'refund'; refund_address: string }
  );

/**
 * One item of `POST /api/v1/escrow/create-batch` (docs/wallet-daemon.md): exactly the
 * single create call with that idempotency key, so a retry either way replays it.
 */
export type CreateBatchItem = CreateEscrowRequest & { idempotency_key: string };

/** Per batch item: the status and body the single call would have answered (`code`, `message` on an error). */
export interface BatchItemResult<Body> {
  idempotency_key: string;
  status: number;
  body: Partial<Body> & { code?: string; message?: string };
  replayed: boolean;
}

export type SettleBatchResult = BatchItemResult<{ transaction_hash: string }>;
export type CreateBatchResult = BatchItemResult<EscrowHold>;

export abstract class WalletDaemonClient {
  abstract createEscrow(request: CreateEscrowRequest, idempotencyKey: string): Promise<EscrowHold>;
  abstract releaseEscrow(
    request: SettleRequest & { payee: string },
    idempotencyKey: string,
  ): Promise<{ transaction_hash: string }>;
  abstract refundEscrow(
    request: SettleRequest & { refund_address: string },
    idempotencyKey: string,
  ): Promise<{ transaction_hash: string }>;
  /** Many settlements in one call and one daemon commit; throws WalletDaemonRejected 404/405 where the daemon lacks the route. */
  abstract settleEscrows(items: SettleBatchItem[]): Promise<SettleBatchResult[]>;
  /** Many creates in one call and one daemon commit; throws WalletDaemonRejected 404/405 where the daemon lacks the route. */
  abstract createEscrows(items: CreateBatchItem[]): Promise<CreateBatchResult[]>;
  abstract getEscrow(escrowId: string): Promise<EscrowState>;
  abstract ping(): Promise<void>;
}

/** The daemon said no, definitively (4xx): retrying the same request will not help. */
export class WalletDaemonRejected extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'WalletDaemonRejected';
  }
  get insufficientFunds(): boolean {
    return this.status === 402;
  }
}

/** No definitive answer (network error, timeout, 5xx): the call may or may not have applied. */
export class WalletDaemonUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WalletDaemonUnavailable';
  }
}
