import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics, named after what an operator asks ("how many escrows expired
 * today?", "how many settlements are waiting on the wallet daemon?").
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly paymentTransitions = new Counter({
    name: 'payment_status_transitions_total',
    help: 'Payment status changes, by from and to status',
    labelNames: ['from', 'to'],
    registers: [this.registry],
  });
  readonly escrowCreationFailures = new Counter({
    name: 'escrow_creation_failures_total',
    help: 'Escrow creations the wallet daemon refused or could not be reached for, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly escrowsExpired = new Counter({
    name: 'escrows_expired_total',
    help: 'Escrows refunded because they passed their expiry while still held',
    registers: [this.registry],
  });
  readonly settlementFailures = new Counter({
    name: 'settlement_failures_total',
    help: 'Wallet daemon settle calls that failed and will be retried, by kind (release/refund)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly settlementRetries = new Counter({
    name: 'settlement_retries_total',
    help: 'Re-drive attempts of decided work waiting on the wallet daemon, by status',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly idempotencyTakeovers = new Counter({
    name: 'idempotency_takeovers_total',
    help: 'Idempotency-Key claims taken over from an attempt that died, by whether it had committed a first write (resumed)',
    labelNames: ['resumed'],
    registers: [this.registry],
  });
  readonly walletDaemonLatency = new Histogram({
    name: 'wallet_daemon_request_duration_seconds',
    help: 'Wallet daemon call latency, by call and outcome',
    labelNames: ['call', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly walletDaemonErrors = new Counter({
    name: 'wallet_daemon_errors_total',
    help: 'Wallet daemon call errors, by call and kind',
    labelNames: ['call', 'kind'],
    registers: [this.registry],
  });
  readonly awaitingDaemon = new Gauge({
    name: 'payments_awaiting_wallet_daemon',
    help: 'Payments whose decided outcome waits for wallet daemon confirmation, by status',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly dbTransactionAborts = new Counter({
    name: 'db_transaction_aborts_total',
    help: 'Transactions PostgreSQL aborted for a deadlock (deadlock_detected) or serialization_failure, retried while attempts remain; should stay 0 under the lock order',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly oldestOverdueEscrowSeconds = new Gauge({
    name: 'escrow_oldest_overdue_seconds',
    help: 'Age past expiry of the oldest escrow still held (sweeper lag)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
