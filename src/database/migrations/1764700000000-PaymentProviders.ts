import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Several wallet daemons ("payment providers", README "Providers and routing").
 *
 * - `job_payments.provider_id`: the provider a payment's escrow is requested from,
 *   written by the statement that inserts the payment (before any daemon call). Rows from
 *   before routing existed were all held at the one daemon, now the provider `local`.
 *   It may change only while the payment is `pending` without an escrow (a failover after
 *   a create that certainly reached no daemon); a trigger refuses any other change, so a
 *   held payment can never be pointed at a second provider.
 * - `provider_state`: each provider's circuit breaker and drain flag, shared by every
 *   coordinator instance, and its call counters. A row is written on a failure, a state
 *   change or an operator's drain/resume; calls are added in batches.
 */
export class PaymentProviders1764700000000 implements MigrationInterface {
  name = 'PaymentProviders1764700000000';

  async up(q: QueryRunner): Promise<void> {
    // A constant default: PostgreSQL records it in the catalog, no table rewrite. The
    // coordinator always writes the column; the default keeps direct inserts (seeding
    // scripts, the single-daemon set-up) meaning what they meant before.
    await q.query(`ALTER TABLE job_payments ADD COLUMN provider_id varchar(64) NOT NULL DEFAULT 'local'`);
    await q.query(
      `ALTER TABLE job_payments ADD CONSTRAINT job_payments_provider_id_check CHECK (provider_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$')`,
    );
    await q.query(`
      CREATE FUNCTION job_payments_provider_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF OLD.status <> 'pending' OR OLD.escrow_id IS NOT NULL OR NEW.status <> 'pending' THEN
          RAISE EXCEPTION 'payment % is % at provider %: its provider cannot change', OLD.payment_id, OLD.status, OLD.provider_id
            USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
      END $$`);
    await q.query(`
      CREATE TRIGGER job_payments_provider_fixed BEFORE UPDATE OF provider_id ON job_payments
        FOR EACH ROW WHEN (OLD.provider_id IS DISTINCT FROM NEW.provider_id)
        EXECUTE FUNCTION job_payments_provider_fixed()`);
    await q.query(`
      CREATE TABLE provider_state (
        provider_id varchar(64) PRIMARY KEY,
        consecutive_failures integer NOT NULL DEFAULT 0,
        opened_at timestamptz,
        probe_at timestamptz,
        draining boolean NOT NULL DEFAULT false,
        calls bigint NOT NULL DEFAULT 0,
        failures bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT provider_state_id_check CHECK (provider_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
        CONSTRAINT provider_state_counts_check CHECK (consecutive_failures >= 0 AND calls >= 0 AND failures >= 0),
        CONSTRAINT provider_state_probe_when_open CHECK (probe_at IS NULL OR opened_at IS NOT NULL)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE provider_state`);
    await q.query(`DROP TRIGGER job_payments_provider_fixed ON job_payments`);
    await q.query(`DROP FUNCTION job_payments_provider_fixed()`);
    await q.query(`ALTER TABLE job_payments DROP COLUMN provider_id`);
  }
}
