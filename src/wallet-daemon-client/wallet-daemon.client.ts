/**
 * The coordinator's view of the wallet daemon (docs/wallet-daemon.md).
 * `PaymentProviders` makes one per configured provider; the one implementation speaks HTTP.
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

/**
 * A release's extra fields (README "Escrow lifecycle"): `amount` is what the payee gets;
 * when it is less than the escrow, `refund_address` gets the rest in the same transaction.
 */
export type ReleaseRequest = SettleRequest & { payee: string; refund_address?: string };

/** `POST /api/v1/escrow/extend`: the held escrow's expiry moves to `expires_at` (never earlier). */
export interface ExtendEscrowRequest {
  escrow_id: string;
  expires_at: string;
}

export interface EscrowState {
  escrow_id: string;
  address: string;
  amount: string;
  currency: string;
  state: 'held' | 'released' | 'refunded';
  transaction_hash: string | null;
  /** The payment the escrow was created for (every answer of the local daemon carries it). */
  payment_id?: string;
  /** What the settlement paid the payee and the refund address (`POST /api/v1/escrow/lookup`; null while held). */
  released_amount?: string | null;
  refunded_amount?: string | null;
}

/** At most this many ids per `POST /api/v1/escrow/lookup` call. */
export const LOOKUP_MAX_IDS = 500;

/**
 * One item of `POST /api/v1/escrow/settle-batch` (an extension of the single-escrow contract that
 * the local daemon implements): exactly the single release or refund call with that
 * idempotency key, so a retry either way replays it.
 */
export type SettleBatchItem = SettleRequest & { idempotency_key: string } & (
    { action: 'release'; payee: string; refund_address?: string } | { action: 'refund'; refund_address: string }
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
  abstract releaseEscrow(request: ReleaseRequest, idempotencyKey: string): Promise<{ transaction_hash: string }>;
  abstract refundEscrow(
    request: SettleRequest & { refund_address: string },
    idempotencyKey: string,
  ): Promise<{ transaction_hash: string }>;
  /** Many settlements in one call and one daemon commit; throws WalletDaemonRejected 404/405 where the daemon lacks the route. */
  abstract settleEscrows(items: SettleBatchItem[]): Promise<SettleBatchResult[]>;
  /** Many creates in one call and one daemon commit; throws WalletDaemonRejected 404/405 where the daemon lacks the route. */
  abstract createEscrows(items: CreateBatchItem[]): Promise<CreateBatchResult[]>;
  abstract getEscrow(escrowId: string): Promise<EscrowState>;
  /** Moves a held escrow's expiry later (bookkeeping at a daemon that never expires escrows by itself). */
  abstract extendEscrow(request: ExtendEscrowRequest, idempotencyKey: string): Promise<{ expires_at: string }>;
  /** Up to LOOKUP_MAX_IDS escrows in one read; ids the daemon does not know are left out of the answer. */
  abstract lookupEscrows(escrowIds: string[]): Promise<EscrowState[]>;
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

/**
 * Certainly not applied: every attempt was refused before anything was sent (the
 * connection was refused), or no attempt was made (the provider's circuit is open).
 * Still a WalletDaemonUnavailable to every caller that does not care; an escrow creation
 * may move to another provider (README "Providers and routing").
 */
export class WalletDaemonUnreachable extends WalletDaemonUnavailable {
  constructor(message: string) {
    super(message);
    this.name = 'WalletDaemonUnreachable';
  }
}
