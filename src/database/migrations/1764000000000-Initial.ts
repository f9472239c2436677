import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The coordinator's schema. Rules that must hold whatever the code does live here as
 * constraints: amounts > 0, status values, one live payment per job, an escrow never
 * both released and refunded, and `job.payment_status` mirrored from the payment row
 * by a trigger in the same transaction (so it is never stale).
 */
export class Initial1764000000000 implements MigrationInterface {
  name = 'Initial1764000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE job (
        job_id            uuid PRIMARY KEY,
        client_id         varchar(64) NOT NULL,
        state             varchar(16) NOT NULL,
        payload           jsonb NOT NULL,
        constraints       jsonb NOT NULL DEFAULT '{}'::jsonb,
        ttl_seconds       integer NOT NULL,
        requested_at      timestamptz NOT NULL,
        expires_at        timestamptz NOT NULL,
        assigned_miner_id varchar(64),
        started_at        timestamptz,
        finished_at       timestamptz,
        result            jsonb,
        metrics           jsonb,
        error             text,
        payment_id        uuid,
        payment_status    varchar(16),
        payment_amount    numeric(20,8),
        payment_currency  varchar(10),
        updated_at        timestamptz NOT NULL,
        CONSTRAINT job_state_check CHECK (state IN ('queued','running','completed','failed','canceled','expired')),
        CONSTRAINT job_payment_status_check CHECK (payment_status IS NULL OR payment_status IN ('pending','escrowed','releasing','released','refunding','refunded','failed')),
        CONSTRAINT job_ttl_check CHECK (ttl_seconds > 0),
        CONSTRAINT job_running_has_miner CHECK (state <> 'running' OR assigned_miner_id IS NOT NULL)
      )`);
    // A client's own jobs, newest first (job ids are UUIDv7, so id order is time order).
    await q.query(`CREATE INDEX job_client_list_idx ON job (client_id, job_id DESC)`);
    // Miners claim the oldest queued job: a small partial index over queued rows only.
    await q.query(`CREATE INDEX job_dispatch_idx ON job (job_id) WHERE state = 'queued'`);
    // The deadline sweep scans only live jobs by deadline.
    await q.query(`CREATE INDEX job_deadline_idx ON job (expires_at) WHERE state IN ('queued','running')`);

    await q.query(`
      CREATE TABLE miner (
        miner_id       varchar(64) PRIMARY KEY,
        payout_address varchar(100) NOT NULL,
        registered_at  timestamptz NOT NULL,
        updated_at     timestamptz NOT NULL
      )`);

    await q.query(`
      CREATE TABLE job_payments (
        payment_id              uuid PRIMARY KEY,
        job_id                  uuid NOT NULL REFERENCES job(job_id),
        client_id               varchar(64) NOT NULL,
        amount                  numeric(20,8) NOT NULL,
        currency                varchar(10) NOT NULL,
        status                  varchar(16) NOT NULL,
        payment_method          varchar(16) NOT NULL DEFAULT 'escrow',
        escrow_id               varchar(100),
        escrow_address          varchar(100),
        payer_address           varchar(100) NOT NULL,
        refund_address          varchar(100) NOT NULL,
        miner_id                varchar(64),
        payee_address           varchar(100),
        transaction_hash        varchar(128),
        refund_transaction_hash varchar(128),
        escrow_timeout_seconds  integer NOT NULL,
        settle_reason           text,
        settled_by              varchar(64),
        failure_reason          text,
        verified_at             timestamptz,
        -- Re-drive bookkeeping for decided work waiting on the wallet daemon.
        attempts                integer NOT NULL DEFAULT 0,
        next_attempt_at         timestamptz,
        last_error              text,
        created_at              timestamptz NOT NULL,
        updated_at              timestamptz NOT NULL,
        escrowed_at             timestamptz,
        released_at             timestamptz,
        refunded_at             timestamptz,
        expires_at              timestamptz NOT NULL,
        CONSTRAINT job_payments_amount_positive CHECK (amount > 0),
        CONSTRAINT job_payments_status_check CHECK (status IN ('pending','escrowed','releasing','released','refunding','refunded','failed')),
        CONSTRAINT job_payments_method_check CHECK (payment_method IN ('escrow')),
        CONSTRAINT job_payments_release_has_payee CHECK (status NOT IN ('releasing','released') OR payee_address IS NOT NULL),
        CONSTRAINT job_payments_released_has_tx CHECK (status <> 'released' OR transaction_hash IS NOT NULL),
        CONSTRAINT job_payments_refunded_has_tx CHECK (status <> 'refunded' OR refund_transaction_hash IS NOT NULL),
        CONSTRAINT job_payments_one_settlement CHECK (transaction_hash IS NULL OR refund_transaction_hash IS NULL)
      )`);
    // At most one live payment per job (a failed one may be replaced).
    await q.query(
      `CREATE UNIQUE INDEX job_payments_one_live_per_job ON job_payments (job_id) WHERE status <> 'failed'`,
    );
    await q.query(`CREATE INDEX job_payments_client_idx ON job_payments (client_id, payment_id DESC)`);
    // A job's payment, newest first (the partial unique index above skips failed rows, so it cannot serve this).
    await q.query(`CREATE INDEX job_payments_job_idx ON job_payments (job_id, created_at DESC)`);
    // The re-drive worker's queue: only rows still waiting on the daemon carry a next attempt.
    await q.query(
      `CREATE INDEX job_payments_redrive_idx ON job_payments (next_attempt_at) WHERE next_attempt_at IS NOT NULL`,
    );

    await q.query(`
      CREATE TABLE payment_escrows (
        payment_id   uuid PRIMARY KEY REFERENCES job_payments(payment_id),
        escrow_id    varchar(100) NOT NULL UNIQUE,
        amount       numeric(20,8) NOT NULL,
        currency     varchar(10) NOT NULL,
        address      varchar(100) NOT NULL,
        is_active    boolean NOT NULL DEFAULT true,
        is_released  boolean NOT NULL DEFAULT false,
        is_refunded  boolean NOT NULL DEFAULT false,
        create_transaction_hash varchar(128),
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL,
        released_at  timestamptz,
        refunded_at  timestamptz,
        CONSTRAINT payment_escrows_amount_positive CHECK (amount > 0),
        CONSTRAINT payment_escrows_never_both CHECK (NOT (is_released AND is_refunded)),
        CONSTRAINT payment_escrows_settled_inactive CHECK (NOT (is_released OR is_refunded) OR NOT is_active)
      )`);

    await q.query(`
      CREATE TABLE payment_events (
        event_id    bigserial PRIMARY KEY,
        payment_id  uuid NOT NULL REFERENCES job_payments(payment_id),
        from_status varchar(16),
        to_status   varchar(16) NOT NULL,
        reason      text,
        actor       varchar(64) NOT NULL,
        details     jsonb,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, event_id)`);
    // The audit trail is append-only, enforced by the database.
    await q.query(`
      CREATE FUNCTION payment_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'payment_events is append-only'; END $$`);
    await q.query(`
      CREATE TRIGGER payment_events_no_change BEFORE UPDATE OR DELETE ON payment_events
      FOR EACH ROW EXECUTE FUNCTION payment_events_append_only()`);

    // job.payment_* mirrors the payment row in the same statement, so it can never be stale;
    // a new payment also pulls the job's deadline in to the escrow's expiry.
    await q.query(`
      CREATE FUNCTION job_payment_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- A job's effective deadline is the earlier of its TTL and its escrow's expiry.
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
      CREATE TABLE idempotency_keys (
        principal_id  varchar(64) NOT NULL,
        method        varchar(8) NOT NULL,
        path          varchar(300) NOT NULL,
        key           varchar(255) NOT NULL,
        request_hash  char(64) NOT NULL,
        status_code   integer,
        response_body jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        completed_at  timestamptz,
        expires_at    timestamptz NOT NULL,
        PRIMARY KEY (principal_id, method, path, key)
      )`);
    await q.query(`CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE idempotency_keys`);
    await q.query(`DROP TRIGGER job_payments_mirror ON job_payments`);
    await q.query(`DROP FUNCTION job_payment_mirror`);
    await q.query(`DROP TABLE payment_events`);
    await q.query(`DROP FUNCTION payment_events_append_only`);
    await q.query(`DROP TABLE payment_escrows`);
    await q.query(`DROP TABLE job_payments`);
    await q.query(`DROP TABLE miner`);
    await q.query(`DROP TABLE job`);
  }
}
