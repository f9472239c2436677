import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CoalescerObserver } from '../common/coalescer';

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
  readonly coalescedGroupSize = new Histogram({
    name: 'coalesced_group_size',
    help: 'Concurrent single requests carried out together as one group (1: alone), by kind',
    labelNames: ['kind'],
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [this.registry],
  });
  readonly coalescerWaiting = new Gauge({
    name: 'coalescer_waiting_requests',
    help: 'Single requests waiting for the group in flight to finish before going as the next group, by kind',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  /** The observer a coalescer of `kind` reports its queue and group sizes to. */
  coalescerObserver(kind: string): CoalescerObserver {
    return {
      waiting: (depth) => this.coalescerWaiting.set({ kind }, depth),
      carried: (size) => this.coalescedGroupSize.observe({ kind }, size),
    };
  }

  readonly providerCalls = new Counter({
    name: 'payment_provider_calls_total',
    help: 'Calls to each payment provider (wallet daemon), by provider, call and outcome (ok, rejected, unavailable, unreachable, circuit_open)',
    labelNames: ['provider', 'call', 'outcome'],
    registers: [this.registry],
  });
  readonly providerFailures = new Counter({
    name: 'payment_provider_failures_total',
    help: 'Calls to each payment provider without a definitive answer (what its circuit breaker counts), by provider',
    labelNames: ['provider'],
    registers: [this.registry],
  });
  readonly providerLatency = new Histogram({
    name: 'payment_provider_request_duration_seconds',
    help: 'Payment provider call latency (retries included), by provider and call',
    labelNames: ['provider', 'call'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly providerCircuitState = new Gauge({
    name: 'payment_provider_circuit_state',
    help: "Each payment provider's circuit as this instance last saw it: 0 closed, 1 half-open, 2 open",
    labelNames: ['provider'],
    registers: [this.registry],
  });
  readonly providerFailovers = new Counter({
    name: 'payment_provider_failovers_total',
    help: 'Escrow creations moved to another provider because the first certainly never received them, by from and to',
    labelNames: ['from', 'to'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
