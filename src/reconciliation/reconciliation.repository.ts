// Owns the reconciliation_report table; reads job_payments (never writes it: repairs go through PaymentsService).
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { JobPayment } from '../payments/job-payment.entity';
import type { MismatchView } from './dto/reconciliation.dto';

/** The last finished pass, as stored (one row, shared by every instance). */
export interface ReportRow {
  last_run_at: Date | null;
  checked: number;
  matched: number;
  repaired: number;
  mismatches: MismatchView[];
}

/** A finished pass's counts; `checked` is their sum (the table's CHECK holds it to that). */
export interface PassReport {
  matched: number;
  repaired: number;
  mismatches: MismatchView[];
}

/** Where a walk over recently settled payments stands: the last row's settlement time and id. */
export interface SettledCursor {
  settled_at: string;
  payment_id: string;
}

export type SettledRow = JobPayment & { settled_at: string };

/** Below every payment id: the start of a keyset walk (no `IS NULL OR`, which a generic plan cannot use an index for). */
const FIRST_ID = '00000000-0000-0000-0000-000000000000';

@Injectable()
export class ReconciliationRepository {
  // ---------------------------------------------------------------- the lease

  /**
   * Takes the pass lease when it is free (never held, or run out) and the last pass
   * finished at least `minGapMs` ago: one statement, so of instances asking at once exactly
   * one gets the row. Returns whether `holder` has it.
   */
  async claimLease(sql: Sql, holder: string, leaseMs: number, minGapMs: number): Promise<boolean> {
    const row = await sql.one(
      `UPDATE reconciliation_report SET lease_holder = $1, lease_until = now() + $2::int * interval '1 millisecond'
        WHERE report_id = 1 AND (lease_until IS NULL OR lease_until < now())
          AND (last_run_at IS NULL OR last_run_at <= now() - $3::int * interval '1 millisecond')
       RETURNING report_id`,
      [holder, leaseMs, minGapMs],
    );
    return row !== undefined;
  }

  /** Extends the lease while `holder` still has it; false when it was lost (run out and taken). */
  async renewLease(sql: Sql, holder: string, leaseMs: number): Promise<boolean> {
    const row = await sql.one(
      `UPDATE reconciliation_report SET lease_until = now() + $2::int * interval '1 millisecond'
        WHERE report_id = 1 AND lease_holder = $1 RETURNING report_id`,
      [holder, leaseMs],
    );
    return row !== undefined;
  }

  /** Gives the lease back without a report (a pass that failed). */
  async releaseLease(sql: Sql, holder: string): Promise<void> {
    await sql.one(
      `UPDATE reconciliation_report SET lease_holder = NULL, lease_until = NULL
        WHERE report_id = 1 AND lease_holder = $1 RETURNING report_id`,
      [holder],
    );
  }

  /** Stores the pass's report and gives the lease back, only while `holder` still has it. */
  async finish(sql: Sql, holder: string, startedAt: Date, report: PassReport): Promise<boolean> {
    const row = await sql.one(
      `UPDATE reconciliation_report
          SET started_at = $2, last_run_at = now(), matched = $3::int, repaired = $4::int, mismatches = $5::jsonb,
              checked = $3::int + $4::int + jsonb_array_length($5::jsonb), lease_holder = NULL, lease_until = NULL
        WHERE report_id = 1 AND lease_holder = $1
       RETURNING report_id`,
      [holder, startedAt, report.matched, report.repaired, JSON.stringify(report.mismatches)],
    );
    return row !== undefined;
  }

  // ---------------------------------------------------------------- reads

  report(sql: Sql): Promise<ReportRow | undefined> {
    return sql.one<ReportRow>(
      `SELECT last_run_at, checked, matched, repaired, mismatches FROM reconciliation_report WHERE report_id = 1`,
    );
  }

  /** Mismatches of the last pass by kind (the gauge). */
  mismatchCounts(sql: Sql): Promise<{ kind: string; n: number }[]> {
    return sql.rows<{ kind: string; n: number }>(
      `SELECT m->>'kind' AS kind, count(*)::int AS n
         FROM reconciliation_report, jsonb_array_elements(mismatches) AS m
        WHERE report_id = 1 GROUP BY 1`,
    );
  }

  /** Payments with an escrow that is not final here, by payment id after `after` (job_payments_reconcile_idx). */
  openPage(sql: Sql, after: string | null, limit: number): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(
      `SELECT * FROM job_payments
        WHERE escrow_id IS NOT NULL AND status IN ('escrowed', 'releasing', 'refunding')
          AND payment_id > $1::uuid
        ORDER BY payment_id LIMIT $2`,
      [after ?? FIRST_ID, limit],
    );
  }

  /**
   * Payments with an escrow settled here in the last `hours` (released, refunded, or a late
   * hold refunded on a failed payment), in settlement order after `after`
   * (job_payments_settled_idx).
   */
  settledPage(sql: Sql, hours: number, after: SettledCursor | null, limit: number): Promise<SettledRow[]> {
    return sql.rows<SettledRow>(
      `SELECT *, COALESCE(released_at, refunded_at)::text AS settled_at FROM job_payments
        WHERE (released_at IS NOT NULL OR refunded_at IS NOT NULL) AND escrow_id IS NOT NULL
          AND COALESCE(released_at, refunded_at) >= GREATEST(now() - $1::int * interval '1 hour', $2::timestamptz)
          AND (COALESCE(released_at, refunded_at), payment_id) > ($2::timestamptz, $3::uuid)
        ORDER BY COALESCE(released_at, refunded_at), payment_id LIMIT $4`,
      [hours, after?.settled_at ?? '-infinity', after?.payment_id ?? FIRST_ID, limit],
    );
  }

  /** The same payments read again (after the daemon answered), to tell a settled state from one in motion. */
  reread(sql: Sql, paymentIds: string[]): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = ANY($1::uuid[])`, [paymentIds]);
  }
}
