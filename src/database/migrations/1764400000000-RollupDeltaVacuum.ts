import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `payment_rollup_delta` is a queue: writers insert, the fold (every 5 s) deletes every
 * row. A summary reads the table whole (it holds only the deltas not folded yet), but a
 * sequential scan also walks every dead row until a vacuum reclaims them: after 900,000
 * payments folded at once (2.7M deltas deleted), one summary spent over 100 ms in that
 * scan, against well under 1 ms once vacuumed. With the default thresholds (20 % of the
 * table's size) autovacuum waits far too long on a table whose live size is near zero;
 * these make it vacuum after a fixed number of dead rows, without throttling.
 */
export class RollupDeltaVacuum1764400000000 implements MigrationInterface {
  name = 'RollupDeltaVacuum1764400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE payment_rollup_delta SET (
        autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_cost_delay = 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE payment_rollup_delta RESET (
        autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay)`);
  }
}
