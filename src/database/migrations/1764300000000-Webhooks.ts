import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Signed webhooks (README "Webhooks"): endpoints, an outbox of events with one delivery
 * row per interested endpoint, and the attempt log.
 *
 * The outbox is written by triggers, so an event is committed in the same transaction as
 * the change it reports whichever code path made it (single, batch, coalesced, sweep,
 * re-drive) and nothing can change without its event:
 * - `payment_events` (one row per payment transition): a statement-level AFTER INSERT
 *   trigger over the transition table turns a whole statement's events into outbox rows
 *   in one INSERT.
 * - `job`: a row-level AFTER UPDATE OF state trigger whose WHEN clause keeps only moves
 *   into a final state. PostgreSQL refuses transition tables on a trigger with a column
 *   list, and a statement trigger without one would copy every updated job row (payload
 *   included) on every job write; the WHEN clause is checked by the executor without a
 *   function call, so claims, heartbeats and the payment_status mirror cost nothing.
 * Both return at once while no endpoint is enabled, and fan out only to endpoints that
 * want the type and may see it (a client's endpoint: its own payments and jobs).
 *
 * The event carries a snapshot of the payment or job row as it is at the end of the
 * statement that changed it (amounts as exact text); the delivery worker renders it with
 * the API's own view functions, so the body is the view as it was at the change.
 */
export class Webhooks1764300000000 implements MigrationInterface {
  name = 'Webhooks1764300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE webhook_endpoints (
        endpoint_id                uuid PRIMARY KEY,
        -- The client whose events it receives; NULL: registered by an admin, receives every event.
        client_id                  varchar(64),
        created_by                 varchar(64) NOT NULL,
        url                        text NOT NULL,
        event_types                text[] NOT NULL,
        description                text,
        secret                     text NOT NULL,
        -- After a rotation the old secret keeps signing alongside the new one until this time.
        previous_secret            text,
        previous_secret_expires_at timestamptz,
        enabled                    boolean NOT NULL DEFAULT true,
        -- Start of the current run of failed attempts (NULL after a success).
        failing_since              timestamptz,
        disabled_at                timestamptz,
        disabled_reason            text,
        created_at                 timestamptz NOT NULL DEFAULT now(),
        updated_at                 timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT webhook_endpoints_types_check CHECK (cardinality(event_types) > 0 AND event_types <@ ARRAY[
          'payment.created','payment.escrowed','payment.released','payment.refunded','payment.failed',
          'job.completed','job.failed','job.canceled','job.expired']::text[])
      )`);
    // The triggers' "is anyone listening?" probe and fan-out read only enabled endpoints.
    await q.query(`CREATE INDEX webhook_endpoints_enabled_idx ON webhook_endpoints (client_id) WHERE enabled`);
    await q.query(`CREATE INDEX webhook_endpoints_list_idx ON webhook_endpoints (client_id, endpoint_id DESC)`);

    await q.query(`
      CREATE TABLE webhook_events (
        event_id   uuid PRIMARY KEY,
        type       varchar(32) NOT NULL,
        client_id  varchar(64) NOT NULL,
        payment_id uuid,
        job_id     uuid,
        reason     text,
        -- Row snapshots at the change (to_jsonb of job_payments / job, amounts as exact text).
        payment    jsonb,
        job        jsonb,
        created_at timestamptz NOT NULL
      )`);

    await q.query(`
      CREATE TABLE webhook_deliveries (
        delivery_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq              bigserial NOT NULL UNIQUE,
        endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints(endpoint_id) ON DELETE CASCADE,
        event_id         uuid NOT NULL REFERENCES webhook_events(event_id),
        status           varchar(16) NOT NULL DEFAULT 'pending',
        attempts         integer NOT NULL DEFAULT 0,
        -- Index into the retry schedule of the delay after the next failure.
        schedule_step    integer NOT NULL DEFAULT 0,
        -- Due time; while an attempt is out, the end of its lease (a dead worker's claim comes due again).
        next_attempt_at  timestamptz,
        locked_until     timestamptz,
        lease_token      uuid,
        last_status_code integer,
        last_error       text,
        last_attempt_at  timestamptz,
        delivered_at     timestamptz,
        created_at       timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending','delivered','failed')),
        CONSTRAINT webhook_deliveries_due_when_pending CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
        CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
      )`);
    await q.query(
      `CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL`,
    );
    await q.query(`CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, seq DESC)`);

    await q.query(`
      CREATE TABLE webhook_attempts (
        delivery_id  uuid NOT NULL REFERENCES webhook_deliveries(delivery_id) ON DELETE CASCADE,
        attempt      integer NOT NULL,
        status_code  integer,
        error        text,
        duration_ms  integer NOT NULL,
        attempted_at timestamptz NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
      )`);

    await q.query(`
      CREATE FUNCTION webhook_payment_events() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- Cheap way out (no event, nothing planned beyond this probe) unless some enabled endpoint may see one of these payments.
        IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                        WHERE e.enabled AND (e.client_id IS NULL OR e.client_id IN
                              (SELECT p.client_id FROM new_payment_events n JOIN job_payments p ON p.payment_id = n.payment_id)))
        THEN
          RETURN NULL;
        END IF;
        WITH ev AS MATERIALIZED (
          SELECT gen_random_uuid() AS event_id, n.payment_id, n.reason, n.created_at,
                 CASE n.to_status WHEN 'pending' THEN 'payment.created' WHEN 'escrowed' THEN 'payment.escrowed'
                      WHEN 'released' THEN 'payment.released' WHEN 'refunded' THEN 'payment.refunded'
                      ELSE 'payment.failed' END AS type
            FROM new_payment_events n
           -- releasing/refunding are decisions, not outcomes; failed → failed is a late hold refunded.
           WHERE n.to_status IN ('pending','escrowed','released','refunded','failed')
             AND n.from_status IS DISTINCT FROM n.to_status),
        fan AS MATERIALIZED (
          SELECT ev.event_id, e.endpoint_id
            FROM ev JOIN job_payments p ON p.payment_id = ev.payment_id
            JOIN webhook_endpoints e ON e.enabled AND (e.client_id IS NULL OR e.client_id = p.client_id)
                                    AND ev.type = ANY (e.event_types)),
        events AS (
          INSERT INTO webhook_events (event_id, type, client_id, payment_id, job_id, reason, payment, created_at)
          SELECT ev.event_id, ev.type, p.client_id, p.payment_id, p.job_id, ev.reason,
                 to_jsonb(p) || jsonb_build_object('amount', p.amount::text), ev.created_at
            FROM ev JOIN job_payments p ON p.payment_id = ev.payment_id
           WHERE ev.event_id IN (SELECT event_id FROM fan)
          RETURNING event_id)
        INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at)
        SELECT fan.endpoint_id, fan.event_id, now() FROM fan JOIN events USING (event_id);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER payment_events_webhooks AFTER INSERT ON payment_events
      REFERENCING NEW TABLE AS new_payment_events
      FOR EACH STATEMENT EXECUTE FUNCTION webhook_payment_events()`);

    await q.query(`
      CREATE FUNCTION webhook_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        event_type text := 'job.' || NEW.state;
        new_event_id uuid;
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                        WHERE e.enabled AND (e.client_id IS NULL OR e.client_id = NEW.client_id)
                          AND event_type = ANY (e.event_types)) THEN
          RETURN NULL;
        END IF;
        new_event_id := gen_random_uuid();
        INSERT INTO webhook_events (event_id, type, client_id, payment_id, job_id, reason, job, created_at)
        VALUES (new_event_id, event_type, NEW.client_id, NEW.payment_id, NEW.job_id, NEW.error,
                -- payment_status read from the payment row itself: the mirror trigger may not have run yet.
                to_jsonb(NEW) || jsonb_build_object(
                  'payment_amount', NEW.payment_amount::text,
                  'payment_status', COALESCE((SELECT status FROM job_payments WHERE payment_id = NEW.payment_id), NEW.payment_status)),
                now());
        INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at)
        SELECT e.endpoint_id, new_event_id, now() FROM webhook_endpoints e
         WHERE e.enabled AND (e.client_id IS NULL OR e.client_id = NEW.client_id) AND event_type = ANY (e.event_types);
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER job_webhooks AFTER UPDATE OF state ON job
      FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN ('completed','failed','canceled','expired'))
      EXECUTE FUNCTION webhook_job_events()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER job_webhooks ON job`);
    await q.query(`DROP FUNCTION webhook_job_events`);
    await q.query(`DROP TRIGGER payment_events_webhooks ON payment_events`);
    await q.query(`DROP FUNCTION webhook_payment_events`);
    await q.query(`DROP TABLE webhook_attempts`);
    await q.query(`DROP TABLE webhook_deliveries`);
    await q.query(`DROP TABLE webhook_events`);
    await q.query(`DROP TABLE webhook_endpoints`);
  }
}
