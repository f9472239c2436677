import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Drops `job_payments_client_idx (client_id, payment_id DESC)`. Every query that filters
 * payments by client also orders by `created_at` (the history list, export and summary),
 * and `job_payments_client_created_idx (client_id, created_at DESC, payment_id DESC)`
 * serves those, and any lookup by client alone, by its leading column; no statement
 * orders a client's payments by id. The index only cost an entry on every payment
 * insert and on every status change (a status change is never a HOT update).
 */
export class DropRedundantClientIndex1764900000000 implements MigrationInterface {
  name = 'DropRedundantClientIndex1764900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX job_payments_client_idx`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX job_payments_client_idx ON job_payments (client_id, payment_id DESC)`);
  }
}
