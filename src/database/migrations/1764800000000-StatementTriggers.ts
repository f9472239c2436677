import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The two trigger-kept copies of a payment — the job's mirror (`job.payment_*`, migration
 * `1764000000000-Initial`) and the summary's rollup deltas (migration
 * `1764200000000-PaymentHistory`) — written once per statement instead of once per row.
 *
 * Every payment path is a set operation (a coalesced group, a batch of 500, a sweep batch
 * of 200), but the row triggers ran a plpgsql call, a single-row `UPDATE job` and two
 * three-row delta inserts for each payment: pg_stat_statements put the mirror's
 * `UPDATE job` alone at 0.075 ms per row, a quarter of PostgreSQL's CPU per batch refund.
 * Statement triggers with transition tables do the same work as one `UPDATE … FROM` and
 * one grouped `INSERT` per statement; deltas of one key within a statement are summed, and
 * a row whose grouped columns did not change contributes −1 and +1 to the same key, which
 * cancel, so only real moves are written.
 *
 * PostgreSQL allows transition tables only on single-event triggers without a column
 * list, so each event has its own trigger, and the update triggers fire on every update
 * of `job_payments` and look at what changed themselves (an update whose status did not
 * change leaves the job alone, as the row trigger's `UPDATE OF status` did).
 */
export class StatementTriggers1764800000000 implements MigrationInterface {
  name = 'StatementTriggers1764800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER job_payments_mirror ON job_payments`);
    await q.query(`DROP TRIGGER job_payments_rollup_rows ON job_payments`);
    await q.query(`DROP TRIGGER job_payments_rollup_moves ON job_payments`);

    // ------------------------------------------------------------ job mirror
    // A job's effective deadline is the earlier of its TTL and its escrow's expiry: a new
    // payment pulls it in. Should one statement write two payments of a job, the live one
    // (not failed), then the newest, is the one mirrored.
    await q.query(`
      CREATE FUNCTION job_payment_mirror_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE job j SET payment_id = n.payment_id, payment_status = n.status,
                         payment_amount = n.amount, payment_currency = n.currency,
                         expires_at = LEAST(j.expires_at, n.expires_at)
          FROM (SELECT DISTINCT ON (job_id) * FROM new_payments
                 ORDER BY job_id, status <> 'failed' DESC, created_at DESC) n
         WHERE j.job_id = n.job_id
           AND (j.payment_id IS DISTINCT FROM n.payment_id OR j.payment_status IS DISTINCT FROM n.status);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE FUNCTION job_payment_mirror_updated() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE job j SET payment_id = n.payment_id, payment_status = n.status,
                         payment_amount = n.amount, payment_currency = n.currency
          FROM (SELECT DISTINCT ON (n.job_id) n.*
                  FROM new_payments n JOIN old_payments o ON o.payment_id = n.payment_id
                 WHERE o.status IS DISTINCT FROM n.status
                 ORDER BY n.job_id, n.status <> 'failed' DESC, n.created_at DESC) n
         WHERE j.job_id = n.job_id
           AND (j.payment_id IS DISTINCT FROM n.payment_id OR j.payment_status IS DISTINCT FROM n.status);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER job_payments_mirror_inserted AFTER INSERT ON job_payments
      REFERENCING NEW TABLE AS new_payments
      FOR EACH STATEMENT EXECUTE FUNCTION job_payment_mirror_inserted()`);
    await q.query(`
      CREATE TRIGGER job_payments_mirror_updated AFTER UPDATE ON job_payments
      REFERENCING OLD TABLE AS old_payments NEW TABLE AS new_payments
      FOR EACH STATEMENT EXECUTE FUNCTION job_payment_mirror_updated()`);

    // ------------------------------------------------------------ summary rollup
    // One function for the three events: each trigger names the transition tables it has,
    // and the missing side is an empty table of the same shape (an INSERT has no old rows).
    for (const [event, referencing, oldRows, newRows] of [
      ['INSERT', 'NEW TABLE AS new_payments', 'job_payments WHERE false', 'new_payments'],
      ['UPDATE', 'OLD TABLE AS old_payments NEW TABLE AS new_payments', 'old_payments', 'new_payments'],
      ['DELETE', 'OLD TABLE AS old_payments', 'old_payments', 'job_payments WHERE false'],
    ]) {
      const name = event.toLowerCase();
      await q.query(`
        CREATE FUNCTION payment_rollup_${name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO payment_rollup_delta (scope, scope_id, day, currency, status, count, amount)
          SELECT s.scope, s.id, r.day, r.currency, r.status, sum(r.count), sum(r.amount)
            FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, client_id, miner_id, currency, status,
                         -1 AS count, -amount AS amount FROM ${oldRows}
                  UNION ALL
                  SELECT (created_at AT TIME ZONE 'UTC')::date, client_id, miner_id, currency, status,
                         1, amount FROM ${newRows}) r
           CROSS JOIN LATERAL (VALUES ('a', ''), ('c', r.client_id), ('m', COALESCE(r.miner_id, ''))) AS s(scope, id)
           GROUP BY 1, 2, 3, 4, 5
          HAVING sum(r.count) <> 0 OR sum(r.amount) <> 0;
          RETURN NULL;
        END $$`);
      await q.query(`
        CREATE TRIGGER job_payments_rollup_${name} AFTER ${event} ON job_payments
        REFERENCING ${referencing}
        FOR EACH STATEMENT EXECUTE FUNCTION payment_rollup_${name}()`);
    }
    await q.query(`DROP FUNCTION payment_rollup_track()`);
    await q.query(`DROP FUNCTION job_payment_mirror()`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const name of ['insert', 'update', 'delete']) {
      await q.query(`DROP TRIGGER job_payments_rollup_${name} ON job_payments`);
      await q.query(`DROP FUNCTION payment_rollup_${name}()`);
    }
    await q.query(`DROP TRIGGER job_payments_mirror_updated ON job_payments`);
    await q.query(`DROP TRIGGER job_payments_mirror_inserted ON job_payments`);
    await q.query(`DROP FUNCTION job_payment_mirror_updated()`);
    await q.query(`DROP FUNCTION job_payment_mirror_inserted()`);
    await q.query(`
      CREATE FUNCTION job_payment_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE job SET payment_id = NEW.payment_id, payment_status = NEW.status,
                       payment_amount = NEW.amount, payment_currency = NEW.currency,
                       expires_at = CASE WHEN TG_OP = 'INSERT' THEN LEAST(expires_at, NEW.expires_at) ELSE expires_at END
         WHERE job_id = NEW.job_id
           AND (payment_id IS DISTINCT FROM NEW.payment_id OR payment_status IS DISTINCT FROM NEW.status);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER job_payments_mirror AFTER INSERT OR UPDATE OF status ON job_payments
      FOR EACH ROW EXECUTE FUNCTION job_payment_mirror()`);
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
    await q.query(`
      CREATE TRIGGER job_payments_rollup_moves
      AFTER UPDATE OF status, miner_id, client_id, currency, amount, created_at ON job_payments
      FOR EACH ROW
      WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.miner_id IS DISTINCT FROM NEW.miner_id
            OR OLD.client_id IS DISTINCT FROM NEW.client_id OR OLD.currency IS DISTINCT FROM NEW.currency
            OR OLD.amount IS DISTINCT FROM NEW.amount OR OLD.created_at IS DISTINCT FROM NEW.created_at)
      EXECUTE FUNCTION payment_rollup_track()`);
  }
}
