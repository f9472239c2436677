import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Idempotency claims a crash cannot strand (README "Idempotency"): each claim carries a
 * fencing token and a lease another instance may take over once it has passed, and the
 * request's first write records a recovery point in the same transaction, so a retry
 * knows what the first attempt committed.
 */
export class IdempotencyLease1764100000000 implements MigrationInterface {
  name = 'IdempotencyLease1764100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE idempotency_keys
        ADD COLUMN claim_token  uuid,
        ADD COLUMN locked_until timestamptz,
        ADD COLUMN recovery     jsonb`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE idempotency_keys DROP COLUMN claim_token, DROP COLUMN locked_until, DROP COLUMN recovery`,
    );
  }
}
