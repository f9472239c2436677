import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Reconciliation with the wallet daemon (README "Reconciliation").
 *
 * `reconciliation_report` is one row shared by every instance: the lease that lets one
 * instance run a pass at a time (holder and expiry, renewed page by page; a dead holder's
 * lease simply runs out), and the last finished pass's report, so any instance answers
 * `GET /v1/admin/reconciliation` and the `reconciliation_mismatches` gauge the same.
 * Every checked payment is counted exactly once: matched, repaired or listed.
 *
 * The partial index serves the pass's keyset walk over payments whose escrow is not final
 * (the settled ones of the last 24 hours come through `job_payments_settled_idx`).
 */
export class Reconciliation1764600000000 implements MigrationInterface {
  name = 'Reconciliation1764600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE reconciliation_report (
        report_id    smallint PRIMARY KEY DEFAULT 1 CONSTRAINT reconciliation_report_one_row CHECK (report_id = 1),
        lease_holder varchar(64),
        lease_until  timestamptz,
        started_at   timestamptz,
        last_run_at  timestamptz,
        checked      integer NOT NULL DEFAULT 0 CHECK (checked >= 0),
        matched      integer NOT NULL DEFAULT 0 CHECK (matched >= 0),
        repaired     integer NOT NULL DEFAULT 0 CHECK (repaired >= 0),
        -- [{payment_id, kind, coordinator, daemon}], kinds as in reconciliation-rules.ts
        mismatches   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(mismatches) = 'array'),
        CONSTRAINT reconciliation_report_counts CHECK (checked = matched + repaired + jsonb_array_length(mismatches)),
        CONSTRAINT reconciliation_report_lease CHECK ((lease_holder IS NULL) = (lease_until IS NULL)),
        CONSTRAINT reconciliation_report_ran CHECK ((last_run_at IS NULL) = (started_at IS NULL))
      )`);
    await q.query(`INSERT INTO reconciliation_report (report_id) VALUES (1)`);
    await q.query(
      `CREATE INDEX job_payments_reconcile_idx ON job_payments (payment_id)
        WHERE escrow_id IS NOT NULL AND status IN ('escrowed', 'releasing', 'refunding')`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX job_payments_reconcile_idx`);
    await q.query(`DROP TABLE reconciliation_report`);
  }
}
