import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Payment history and reporting (README "Payment history and reporting").
 *
 * - Indexes for the list's filters, each ordered like the list itself (newest first:
 *   `created_at DESC, payment_id DESC`), so a page with one filter reads about `limit`
 *   index entries however many payments there are.
 * - The event feed's visibility horizon: every event records the id of the transaction
 *   that wrote it (`tx`, filled by the column default, so no insert path changes). The
 *   feed serves only events of transactions below the oldest one still running, in
 *   `(tx, event_id)` order: a transaction that commits late can never land behind a
 *   consumer's cursor.
 * - The summary's rollup: a trigger on job_payments appends signed deltas (−1/−amount for
 *   a row's old key, +1/+amount for its new key) to an insert-only table in the same
 *   transaction as the change, so the rollup never drifts and writers never wait on a
 *   shared counter row. A periodic fold moves the deltas into `payment_rollup` (one row
 *   per key); readers sum both.
 */
export class PaymentHistory1764200000000 implements MigrationInterface {
  name = 'PaymentHistory1764200000000';

  async up(q: QueryRunner): Promise<void> {
    // ------------------------------------------------------------ list indexes
    await q.query(`CREATE INDEX job_payments_created_idx ON job_payments (created_at DESC, payment_id DESC)`);
    await q.query(
      `CREATE INDEX job_payments_client_created_idx ON job_payments (client_id, created_at DESC, payment_id DESC)`,
    );
    await q.query(
      `CREATE INDEX job_payments_miner_created_idx ON job_payments (miner_id, created_at DESC, payment_id DESC) WHERE miner_id IS NOT NULL`,
    );
    await q.query(
      `CREATE INDEX job_payments_status_created_idx ON job_payments (status, created_at DESC, payment_id DESC)`,
    );
    // Settlement time is whichever of released_at/refunded_at is set (never both).
    await q.query(
      `CREATE INDEX job_payments_settled_idx ON job_payments ((COALESCE(released_at, refunded_at))) WHERE released_at IS NOT NULL OR refunded_at IS NOT NULL`,
    );
    // A miner's payouts, newest release first.
    await q.query(
      `CREATE INDEX job_payments_payouts_idx ON job_payments (miner_id, released_at DESC, payment_id DESC) WHERE status = 'released'`,
    );
    // currency has two or three values: the created_at index with a filter finds a page as fast as its own index would.

    // ------------------------------------------------------------ event feed horizon
    // A volatile default rewrites the table once; existing events get this migration's transaction id.
    await q.query(`ALTER TABLE payment_events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()`);
    await q.query(`CREATE INDEX payment_events_feed_idx ON payment_events (tx, event_id)`);

    // ------------------------------------------------------------ summary rollup
    // scope: 'a' all payments (scope_id ''), 'c' per client, 'm' per miner ('' for payments without one yet).
    await q.query(`
      CREATE TABLE payment_rollup_delta (
        scope    char(1) NOT NULL,
        scope_id varchar(64) NOT NULL,
        day      date NOT NULL,
        currency varchar(10) NOT NULL,
        status   varchar(16) NOT NULL,
        count    bigint NOT NULL,
        amount   numeric NOT NULL
      )`);
    await q.query(`
      CREATE TABLE payment_rollup (
        scope    char(1) NOT NULL,
        scope_id varchar(64) NOT NULL,
        day      date NOT NULL,
        currency varchar(10) NOT NULL,
        status   varchar(16) NOT NULL,
        count    bigint NOT NULL,
        amount   numeric NOT NULL,
        PRIMARY KEY (scope, scope_id, day, currency, status)
      )`);
    // The fold deletes keys whose deltas cancelled out (a payment that moved on from `pending`…); this finds them.
    await q.query(`CREATE INDEX payment_rollup_empty_idx ON payment_rollup (scope) WHERE count = 0 AND amount = 0`);
    await q.query(`
      CREATE FUNCTION payment_rollup_track() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN
          INSERT INTO payment_rollup_delta (scope, scope_id, day, currency, status, count, amount)
          SELECT s.scope, s.id, (OLD.created_at AT TIME ZONE 'UTC')::date, OLD.currency, OLD.status, -1, -OLD.amount
            FROM (VALUES ('a', ''), ('c', OLD.client_id), ('m', COALESCE(OLD.miner_id, ''))) AS s(scope, id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
          INSERT INTO payment_rollup_delta (scope, scope_id, day, currency, status, count, amount)
          SELECT s.scope, s.id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.currency, NEW.status, 1, NEW.amount
            FROM (VALUES ('a', ''), ('c', NEW.client_id), ('m', COALESCE(NEW.miner_id, ''))) AS s(scope, id);
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER job_payments_rollup_rows AFTER INSERT OR DELETE ON job_payments
      FOR EACH ROW EXECUTE FUNCTION payment_rollup_track()`);
    // Only changes of a grouped column move a payment between rollup keys.
    await q.query(`
      CREATE TRIGGER job_payments_rollup_moves
      AFTER UPDATE OF status, miner_id, client_id, currency, amount, created_at ON job_payments
      FOR EACH ROW
      WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.miner_id IS DISTINCT FROM NEW.miner_id
            OR OLD.client_id IS DISTINCT FROM NEW.client_id OR OLD.currency IS DISTINCT FROM NEW.currency
            OR OLD.amount IS DISTINCT FROM NEW.amount OR OLD.created_at IS DISTINCT FROM NEW.created_at)
      EXECUTE FUNCTION payment_rollup_track()`);
    // Payments that exist already (none on a new install) enter the rollup folded.
    await q.query(`
      INSERT INTO payment_rollup (scope, scope_id, day, currency, status, count, amount)
      SELECT s.scope, s.id, (p.created_at AT TIME ZONE 'UTC')::date, p.currency, p.status, count(*), sum(p.amount)
        FROM job_payments p
        CROSS JOIN LATERAL (VALUES ('a', ''), ('c', p.client_id), ('m', COALESCE(p.miner_id, ''))) AS s(scope, id)
       GROUP BY 1, 2, 3, 4, 5`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER job_payments_rollup_moves ON job_payments`);
    await q.query(`DROP TRIGGER job_payments_rollup_rows ON job_payments`);
    await q.query(`DROP FUNCTION payment_rollup_track`);
    await q.query(`DROP TABLE payment_rollup`);
    await q.query(`DROP TABLE payment_rollup_delta`);
    await q.query(`DROP INDEX payment_events_feed_idx`);
    await q.query(`ALTER TABLE payment_events DROP COLUMN tx`);
    for (const index of [
      'job_payments_payouts_idx',
      'job_payments_settled_idx',
      'job_payments_status_created_idx',
      'job_payments_miner_created_idx',
      'job_payments_client_created_idx',
      'job_payments_created_idx',
    ])
      await q.query(`DROP INDEX ${index}`);
  }
}
