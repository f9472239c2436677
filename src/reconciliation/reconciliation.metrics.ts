import { Injectable, Logger } from '@nestjs/common';
import { Gauge } from 'prom-client';
import { Transactions } from '../database/transactions';
import { MetricsService } from '../metrics/metrics.service';
import { MISMATCH_KINDS } from './reconciliation-rules';
import { ReconciliationRepository } from './reconciliation.repository';

/**
 * `reconciliation_mismatches{kind}`: the mismatches the last pass found, read from the
 * shared report at each scrape. A gauge of the last pass rather than a counter of
 * findings: a drift stays listed pass after pass until an operator fixes it, and a counter
 * would grow by it every pass (and by every instance's view of it); read from the one
 * report, every instance answers the same and none counts a pass twice.
 */
@Injectable()
export class ReconciliationMetrics {
  private readonly logger = new Logger('Reconciliation');

  constructor(metrics: MetricsService, tx: Transactions, reports: ReconciliationRepository) {
    const logger = this.logger;
    new Gauge({
      name: 'reconciliation_mismatches',
      help: 'Payments whose escrow disagrees with the wallet daemon in the last reconciliation pass, by kind (README "Reconciliation")',
      labelNames: ['kind'],
      registers: [metrics.registry],
      async collect() {
        try {
          const counts = new Map((await reports.mismatchCounts(tx.sql)).map((r) => [r.kind, r.n]));
          for (const kind of MISMATCH_KINDS) this.set({ kind }, counts.get(kind) ?? 0);
        } catch (error: unknown) {
          // The scrape still answers (with the last values read); the database's own alerts cover an outage.
          logger.warn({ err: error }, 'reconciliation_mismatches: the report could not be read');
        }
      },
    });
  }
}
