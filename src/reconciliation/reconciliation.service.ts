import { Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { iso } from '../common/format';
import { Transactions } from '../database/transactions';
import { EscrowService } from '../escrow/escrow.service';
import type { JobPayment } from '../payments/job-payment.entity';
import { settledLegs } from '../payments/payment.view';
import { PaymentsService } from '../payments/payments.service';
import { LOOKUP_MAX_IDS, type EscrowState } from '../wallet-daemon-client/wallet-daemon.client';
import type { MismatchView, ReconciliationReportView } from './dto/reconciliation.dto';
import { classify, CoordinatorSide, Verdict } from './reconciliation-rules';
import { PassReport, ReconciliationRepository, SettledCursor } from './reconciliation.repository';

/** Payments read per page, and escrow ids per daemon lookup call. */
const PAGE_SIZE = LOOKUP_MAX_IDS;
/** Settled payments are compared for this long after their settlement. */
const SETTLED_WINDOW_HOURS = 24;
/** The pass lease, renewed after every page: a holder that died frees it within this time. */
const LEASE_MS = 60_000;

/** A finished pass (null from `reconcile`: another instance holds the lease, or a pass ran too recently). */
export type PassResult = PassReport & { checked: number };

/**
 * Compares the coordinator's books with the wallet daemon's (README "Reconciliation").
 *
 * One instance at a time runs a pass, under a lease row (`reconciliation_report`) rather
 * than a session advisory lock: the lease needs no connection held for the whole pass (a
 * pass spends most of its time waiting on the daemon), survives a connection pooler, runs
 * out by itself when its holder dies, and the report is written only by the lease's
 * holder, so a pass that lost its lease cannot overwrite a newer report. Two passes can
 * still never double repair: a repair is the settlement's own compare-and-set.
 *
 * Each page: the rows are read, the daemon is asked in one lookup call (no transaction
 * open), and the rows are read again. A payment whose row changed in between was in
 * motion and is left to the next pass (not counted); for the others the coordinator's
 * state held still across the daemon's answer, so the comparison is of two states that
 * really coexisted and a mismatch is never an artefact of a settlement in flight.
 */
@Injectable()
export class ReconciliationService {
  private readonly logger = new Logger('Reconciliation');
  /** This instance's name on the lease. */
  private readonly holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`.slice(0, 64);

  constructor(
    private readonly tx: Transactions,
    private readonly reports: ReconciliationRepository,
    private readonly escrow: EscrowService,
    private readonly payments: PaymentsService,
  ) {}

  /**
   * One pass over every payment with an escrow that is not final, then every one settled in
   * the last 24 hours. `minGapMs`: skip when the last pass finished less than that ago
   * (the timer's spacing across instances; a direct call runs whenever the lease is free).
   * `stopping`: asked between pages; true ends the pass unwritten, the lease given back
   * (an instance shutting down does not wait for a long pass).
   */
  async reconcile(minGapMs = 0, stopping: () => boolean = () => false): Promise<PassResult | null> {
    const sql = this.tx.sql;
    if (!(await this.reports.claimLease(sql, this.holder, LEASE_MS, minGapMs))) return null;
    const startedAt = new Date();
    const pass = new Pass();
    try {
      let after: string | null = null;
      for (;;) {
        const page = await this.reports.openPage(sql, after, PAGE_SIZE);
        if (page.length > 0) await this.checkPage(page, pass);
        if (page.length < PAGE_SIZE) break;
        after = page[page.length - 1].payment_id;
        await this.keepLease(stopping);
      }
      let cursor: SettledCursor | null = null;
      for (;;) {
        const page = await this.reports.settledPage(sql, SETTLED_WINDOW_HOURS, cursor, PAGE_SIZE);
        if (page.length > 0) await this.checkPage(page, pass);
        if (page.length < PAGE_SIZE) break;
        const last = page[page.length - 1];
        cursor = { settled_at: last.settled_at, payment_id: last.payment_id };
        await this.keepLease(stopping);
      }
      if (!(await this.reports.finish(sql, this.holder, startedAt, pass.report()))) {
        throw new Error('reconciliation lease lost before the report was written; the pass is discarded');
      }
    } catch (error) {
      await this.reports.releaseLease(sql, this.holder).catch(() => undefined);
      throw error;
    }
    const report = pass.report();
    const result = { checked: report.matched + report.repaired + report.mismatches.length, ...report };
    this.logger.log(
      {
        checked: result.checked,
        matched: result.matched,
        repaired: result.repaired,
        mismatches: result.mismatches.length,
      },
      'reconciliation pass finished',
    );
    return result;
  }

  /** The last finished pass, as stored (any instance answers the same). */
  async lastReport(): Promise<ReconciliationReportView> {
    const row = await this.reports.report(this.tx.sql);
    if (!row) throw new Error('reconciliation_report has no row (migration 1764600000000 not applied)');
    return {
      last_run_at: iso(row.last_run_at),
      checked: row.checked,
      matched: row.matched,
      repaired: row.repaired,
      mismatches: row.mismatches,
    };
  }

  private async keepLease(stopping: () => boolean): Promise<void> {
    if (stopping()) throw new PassStopped();
    if (!(await this.reports.renewLease(this.tx.sql, this.holder, LEASE_MS))) {
      throw new Error('reconciliation lease lost mid-pass (a page took longer than the lease); the pass is discarded');
    }
  }

  /** One page: lookup at the daemon, re-read, classify, record the repairs in one statement. */
  private async checkPage(page: JobPayment[], pass: Pass): Promise<void> {
    const rows = page.filter((p) => !pass.seen.has(p.payment_id));
    if (rows.length === 0) return;
    const escrows = await this.escrow.lookup(rows);
    const now = new Map(
      (
        await this.reports.reread(
          this.tx.sql,
          rows.map((p) => p.payment_id),
        )
      ).map((p) => [p.payment_id, p]),
    );

    const repairs: { payment: JobPayment; verdict: Extract<Verdict, { verdict: 'repair' }> }[] = [];
    for (const before of rows) {
      const row = now.get(before.payment_id);
      // Moved while the daemon was asked: in motion, not comparable now; the next pass sees it settled.
      if (!row || !sameState(before, row)) continue;
      pass.seen.add(row.payment_id);
      const daemon = escrows.get((row.escrow_id as string).toLowerCase());
      const verdict = classify(coordinatorSide(row), daemon);
      if (verdict.verdict === 'matched') pass.matched++;
      else if (verdict.verdict === 'repair') repairs.push({ payment: row, verdict });
      else {
        const mismatch = mismatchView(row, verdict.kind, daemon);
        pass.mismatches.push(mismatch);
        this.logger.warn(mismatch, `reconciliation mismatch: ${verdict.kind}`);
      }
    }
    if (repairs.length === 0) return;

    const moved = new Set(
      (
        await this.payments.recordReconciled(
          repairs.map((r) => ({ payment: r.payment, transactionHash: r.verdict.transactionHash })),
        )
      ).map((m) => m.payment_id),
    );
    for (const { payment, verdict } of repairs) {
      if (moved.has(payment.payment_id)) {
        pass.repaired++;
        this.logger.warn(
          { payment_id: payment.payment_id, status: verdict.outcome, transaction_hash: verdict.transactionHash },
          'reconciliation recorded a settlement the daemon had carried out',
        );
      } else {
        // The settlement's own answer was recorded first, by the same compare-and-set: the books agree.
        pass.matched++;
      }
    }
  }
}

/** The instance is shutting down: the pass ends between two pages, nothing written. */
export class PassStopped extends Error {
  constructor() {
    super('reconciliation pass stopped: the instance is shutting down');
    this.name = 'PassStopped';
  }
}

/** What one pass has found so far. */
class Pass {
  readonly seen = new Set<string>();
  matched = 0;
  repaired = 0;
  readonly mismatches: MismatchView[] = [];

  report(): PassReport {
    return { matched: this.matched, repaired: this.repaired, mismatches: this.mismatches };
  }
}

function coordinatorSide(p: JobPayment): CoordinatorSide {
  const row = p as JobPayment & { released_amount?: string | null; refunded_amount?: string | null };
  return {
    payment_id: p.payment_id,
    status: p.status,
    amount: p.amount,
    currency: p.currency,
    escrow_id: p.escrow_id as string,
    transaction_hash: p.transaction_hash,
    refund_transaction_hash: p.refund_transaction_hash,
    released_amount: row.released_amount ?? null,
    refunded_amount: row.refunded_amount ?? null,
  };
}

/** The fields reconciliation compares: equal before and after the daemon's answer, the row held still. */
function sameState(a: JobPayment, b: JobPayment): boolean {
  const x = coordinatorSide(a);
  const y = coordinatorSide(b);
  return (Object.keys(x) as (keyof CoordinatorSide)[]).every((k) => x[k] === y[k]);
}

function mismatchView(p: JobPayment, kind: MismatchView['kind'], d: EscrowState | undefined): MismatchView {
  return {
    payment_id: p.payment_id,
    kind,
    coordinator: {
      status: p.status,
      amount: p.amount,
      currency: p.currency,
      escrow_id: p.escrow_id as string,
      transaction_hash: p.transaction_hash,
      refund_transaction_hash: p.refund_transaction_hash,
      // What the row says each side got, to read against the daemon's legs.
      ...settledLegs(p),
    },
    daemon: d
      ? {
          escrow_id: d.escrow_id,
          payment_id: d.payment_id ?? null,
          state: d.state,
          amount: d.amount,
          currency: d.currency,
          transaction_hash: d.transaction_hash,
          released_amount: d.released_amount ?? null,
          refunded_amount: d.refunded_amount ?? null,
        }
      : null,
  };
}
