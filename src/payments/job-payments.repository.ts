// Owns the job_payments table.
import { Inject, Injectable } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import type { Sql } from '../database/transactions';
import type { EscrowHold } from '../wallet-daemon-client/wallet-daemon.client';
import type { JobPayment, PaymentStatus } from './job-payment.entity';

/** A payment to insert as `pending` (its job exists, or is inserted by the same statement). */
export interface NewPayment {
  payment_id: string;
  job_id: string;
  client_id: string;
  amount: string;
  currency: string;
  payer_address: string;
  refund_address: string;
  escrow_timeout_seconds: number;
  /** Where its escrow is requested (routing decided it before this insert). */
  provider_id: string;
  /** Who asked for it (the payment's first event). */
  actor: string;
}

/** The job inserted together with its payment by `insertPendingWithJob` (one round trip). */
export interface NewJobRow {
  job_id: string;
  client_id: string;
  /** JSON text. */
  payload: string;
  /** JSON text. */
  constraints: string;
  ttl_seconds: number;
}

/** escrowed → releasing/refunding of one payment: a single call, a batch item or a swept job. */
export interface Decision {
  payment_id: string;
  to: 'releasing' | 'refunding';
  reason: string;
  actor: string;
  /** A partial release: what the miner is paid (the rest is refunded in the same settlement). */
  released_amount?: string | null;
}

/** What the daemon answered for one decided payment. */
export interface Settled {
  payment: JobPayment;
  transactionHash: string;
}

export type HeldPayment = { payment: JobPayment; hold: EscrowHold };

/** A moved payment with the status it came from (for the log line written after commit). */
export type Moved = JobPayment & { from_status: PaymentStatus };

/**
 * Every statement on `job_payments`, each written out whole, each over a set (a single
 * payment is a set of one). A status change is one compare-and-set UPDATE whose row count
 * decides, and the same statement appends its audit event (`payment_events`) and writes
 * the escrow record (`payment_escrows`), so a change and its records commit together in
 * one round trip.
 *
 * Lock order: job before payment, always. A statement that runs on its own locks its
 * jobs in its first CTE (`locked_jobs`, in `job_id` order) and gates the UPDATE on
 * `(SELECT count(*) FROM locked_jobs) >= 0`: a condition on no row, which PostgreSQL
 * evaluates once (a one-time filter) before it reads any payment row, so every job is
 * locked first. The others run inside a transaction that took `PaymentJobs.lockJob` first.
 *
 * A status test on a set of ids is written `(p.status = 'escrowed') IS TRUE` (the same
 * test: status is never NULL), which no index can serve, so the ids are looked up by
 * primary key whatever the statistics say. Written plainly, the planner walked the whole
 * status index whenever statistics called that status rare (after a bulk load of settled
 * history, say): with 8,000 escrowed payments a decision over 30 ids took 16–23 ms
 * instead of 3, and a group of polls 122 ms.
 */
@Injectable()
export class JobPaymentsRepository {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  // ---------------------------------------------------------------- creation

  /** A new job and its `pending` payment with its event: one statement, one round trip, one commit. */
  insertPendingWithJob(sql: Sql, job: NewJobRow, payment: NewPayment): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `WITH job_row AS (
         INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
         VALUES ($1, $2, 'queued', $3, $4, $5::int, now(), now() + $5::int * interval '1 second', now()) RETURNING *),
       created AS (
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   escrow_timeout_seconds, next_attempt_at, created_at, updated_at, expires_at, provider_id)
         SELECT $6, job_row.job_id, $2, $7, $8, 'pending', $9, $10, $11::int,
                now() + $12::int * interval '1 millisecond', now(), now(), now() + $11::int * interval '1 second', $14
           FROM job_row
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, NULL, 'pending', 'payment_created', $13 FROM created)
       SELECT * FROM created`,
      [
        job.job_id,
        job.client_id,
        job.payload,
        job.constraints,
        job.ttl_seconds,
        payment.payment_id,
        payment.amount,
        payment.currency,
        payment.payer_address,
        payment.refund_address,
        payment.escrow_timeout_seconds,
        this.config.settlementLeaseMs,
        payment.actor,
        payment.provider_id,
      ],
    );
  }

  /** `pending` payments of existing jobs, with their events: one statement for the whole set. */
  insertPending(sql: Sql, payments: NewPayment[]): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(
      `WITH input AS (
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::numeric[], $4::varchar[], $5::varchar[], $6::varchar[], $7::int[], $8::varchar[], $9::varchar[], $11::varchar[])
                    AS i(payment_id, job_id, amount, currency, payer_address, refund_address, timeout, client_id, actor, provider_id)),
       created AS (
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   escrow_timeout_seconds, next_attempt_at, created_at, updated_at, expires_at, provider_id)
         SELECT payment_id, job_id, client_id, amount, currency, 'pending', payer_address, refund_address, timeout,
                now() + $10::int * interval '1 millisecond', now(), now(), now() + timeout * interval '1 second', provider_id
           FROM input
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT c.payment_id, NULL, 'pending', 'payment_created', i.actor FROM created c JOIN input i USING (payment_id))
       SELECT * FROM created`,
      [
        payments.map((p) => p.payment_id),
        payments.map((p) => p.job_id),
        payments.map((p) => p.amount),
        payments.map((p) => p.currency),
        payments.map((p) => p.payer_address),
        payments.map((p) => p.refund_address),
        payments.map((p) => p.escrow_timeout_seconds),
        payments.map((p) => p.client_id),
        payments.map((p) => p.actor),
        this.config.settlementLeaseMs,
        payments.map((p) => p.provider_id),
      ],
    );
  }

  // ---------------------------------------------------------------- escrow holds

  /**
   * pending → escrowed for one hold or many, with their events and escrow records: one
   * statement, the jobs locked first. `liveJobsOnly`: only payments whose job is still
   * live move (the others are left `pending` for the caller to record and refund).
   */
  recordHolds(sql: Sql, held: HeldPayment[], liveJobsOnly: boolean): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(
      `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[]) AS i(payment_id, escrow_id, escrow_address, tx_hash)),
       locked_jobs AS (SELECT job_id, state FROM job WHERE job_id = ANY($6::uuid[]) ORDER BY job_id FOR UPDATE),
       moved AS (
         UPDATE job_payments p SET status = 'escrowed', escrow_id = i.escrow_id, escrow_address = i.escrow_address, escrowed_at = now(),
                next_attempt_at = NULL, last_error = NULL, updated_at = now()
           FROM input i
          WHERE p.payment_id = i.payment_id AND (p.status = 'pending') IS TRUE AND (SELECT count(*) FROM locked_jobs) >= 0
            AND (NOT $5::boolean OR EXISTS (SELECT 1 FROM locked_jobs l WHERE l.job_id = p.job_id AND l.state IN ('queued','running')))
         RETURNING p.*),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT m.payment_id, 'pending', 'escrowed', 'escrow_created', 'system', jsonb_build_object('create_transaction_hash', i.tx_hash)
                    FROM moved m JOIN input i USING (payment_id)),
       hold_record AS (
         INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, create_transaction_hash, created_at, updated_at)
         SELECT m.payment_id, m.escrow_id, m.amount, m.currency, m.escrow_address, i.tx_hash, now(), now() FROM moved m JOIN input i USING (payment_id)
         ON CONFLICT (payment_id) DO NOTHING)
       SELECT * FROM moved`,
      [
        held.map((h) => h.payment.payment_id),
        held.map((h) => h.hold.escrow_id),
        held.map((h) => h.hold.address),
        held.map((h) => h.hold.transaction_hash),
        liveJobsOnly,
        held.map((h) => h.payment.job_id),
      ],
    );
  }

  /** pending → failed: the daemon refused the hold (inside the caller's transaction, job locked). */
  failEscrow(sql: Sql, payment: JobPayment, reason: string, lastError: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `WITH moved AS (
         UPDATE job_payments SET status = 'failed', failure_reason = $2, next_attempt_at = NULL, last_error = $3, updated_at = now()
          WHERE payment_id = $1 AND status = 'pending' RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, 'pending', 'failed', $2, 'system' FROM moved)
       SELECT * FROM moved`,
      [payment.payment_id, reason, lastError],
    );
  }

  /**
   * A failover: the pending payment's escrow is requested from `to` instead, logged as a
   * pending → pending event. Only while nothing can be held for it at its provider: still
   * `pending`, no escrow, never claimed by the re-drive (`attempts = 0`), and still at the
   * provider the caller tried (the database trigger refuses any other provider change).
   */
  moveToProvider(sql: Sql, payment: JobPayment, to: string, why: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `WITH moved AS (
         UPDATE job_payments SET provider_id = $3, updated_at = now()
          WHERE payment_id = $1 AND status = 'pending' AND escrow_id IS NULL AND attempts = 0 AND provider_id = $2
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT payment_id, 'pending', 'pending', 'provider_failover', 'system',
                         jsonb_build_object('from_provider', $2::text, 'to_provider', $3::text, 'error', $4::text) FROM moved)
       SELECT * FROM moved`,
      [payment.payment_id, payment.provider_id, to, why],
    );
  }

  /**
   * pending → failed for the payments of jobs that just passed their deadline unescrowed.
   * They keep a next attempt: the create may have reached the daemon unseen, and the
   * re-drive makes sure any such hold goes straight back.
   */
  failUnescrowedOfJobs(sql: Sql, jobIds: string[]): Promise<{ payment_id: string }[]> {
    return sql.rows<{ payment_id: string }>(
      `WITH moved AS (
         UPDATE job_payments SET status = 'failed', failure_reason = 'escrow_not_confirmed_before_deadline',
                next_attempt_at = now(), updated_at = now()
          WHERE job_id = ANY($1::uuid[]) AND status = 'pending'
         RETURNING payment_id),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                  SELECT payment_id, 'pending', 'failed', 'escrow_not_confirmed_before_deadline', 'system' FROM moved)
       SELECT * FROM moved`,
      [jobIds],
    );
  }

  /**
   * A hold found after its payment failed, refunded at the daemon: recorded on the failed
   * payment (hash, event) with its escrow row, created settled, in one statement.
   */
  recordLateHoldRefund(
    sql: Sql,
    payment: JobPayment,
    hold: EscrowHold,
    transactionHash: string,
  ): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `WITH moved AS (
         UPDATE job_payments SET escrow_id = $2, escrow_address = $3, refund_transaction_hash = $4, refunded_at = now(),
                verified_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now()
          WHERE payment_id = $1 AND status = 'failed' RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT payment_id, 'failed', 'failed', 'late_escrow_refunded', 'wallet-daemon', jsonb_build_object('transaction_hash', $4::text) FROM moved),
       hold_record AS (
         INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, create_transaction_hash,
                                      is_active, is_refunded, refunded_at, created_at, updated_at)
         SELECT payment_id, escrow_id, amount, currency, escrow_address, $5, false, true, now(), now(), now() FROM moved
         ON CONFLICT (payment_id) DO NOTHING)
       SELECT * FROM moved`,
      [payment.payment_id, hold.escrow_id, hold.address, transactionHash, hold.transaction_hash],
    );
  }

  // ---------------------------------------------------------------- decisions

  /**
   * escrowed → releasing/refunding with their events, leased to the caller for the
   * settlement: one statement for a single call, a batch or a swept set alike. Inside the
   * caller's transaction, which holds the jobs' locks.
   */
  decide(sql: Sql, decisions: Decision[]): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(
      `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[], $6::numeric[])
                         AS i(payment_id, to_status, reason, actor, released_amount)),
       moved AS (
         UPDATE job_payments p SET status = i.to_status, settle_reason = i.reason, settled_by = i.actor,
                released_amount = CASE WHEN i.to_status = 'releasing' THEN i.released_amount END,
                next_attempt_at = now() + $5::int * interval '1 millisecond', updated_at = now()
           FROM input i WHERE p.payment_id = i.payment_id AND (p.status = 'escrowed') IS TRUE
         RETURNING p.*),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT payment_id, 'escrowed', status, settle_reason, settled_by,
                         CASE WHEN released_amount IS NOT NULL THEN jsonb_build_object(
                           'released_amount', released_amount::text, 'refunded_amount', (amount - released_amount)::text) END
                    FROM moved)
       SELECT * FROM moved`,
      [
        decisions.map((d) => d.payment_id),
        decisions.map((d) => d.to),
        decisions.map((d) => d.reason),
        decisions.map((d) => d.actor),
        this.config.settlementLeaseMs,
        decisions.map((d) => d.released_amount ?? null),
      ],
    );
  }

  /** Escrowed payments of jobs past their deadline, locked, with why: their escrow expired, or only the job did. */
  escrowedOfEndedJobs(sql: Sql, jobIds: string[]): Promise<{ payment_id: string; reason: string }[]> {
    return sql.rows<{ payment_id: string; reason: string }>(
      `SELECT payment_id, CASE WHEN expires_at <= now() THEN 'escrow_expired' ELSE 'job_expired' END AS reason
         FROM job_payments WHERE job_id = ANY($1::uuid[]) AND (status = 'escrowed') IS TRUE ORDER BY payment_id FOR UPDATE`,
      [jobIds],
    );
  }

  // ---------------------------------------------------------------- settlements

  /**
   * releasing → released and refunding → refunded for one settlement or many, with their
   * events and escrow records: one statement, the jobs locked first. `actor`: who learned
   * the answer (the settlement's own call, or reconciliation reading the daemon's books).
   */
  recordSettlements(sql: Sql, settled: Settled[], actor = 'wallet-daemon'): Promise<Moved[]> {
    return sql.rows<Moved>(
      `WITH input AS (SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[]) AS i(payment_id, from_status, tx_hash)),
       locked_jobs AS (SELECT job_id FROM job WHERE job_id = ANY($4::uuid[]) ORDER BY job_id FOR UPDATE),
       moved AS (
         UPDATE job_payments p SET
                status = CASE i.from_status WHEN 'releasing' THEN 'released' ELSE 'refunded' END,
                transaction_hash = CASE i.from_status WHEN 'releasing' THEN i.tx_hash ELSE p.transaction_hash END,
                released_at = CASE i.from_status WHEN 'releasing' THEN now() ELSE p.released_at END,
                refund_transaction_hash = CASE i.from_status WHEN 'refunding' THEN i.tx_hash ELSE p.refund_transaction_hash END,
                refunded_at = CASE i.from_status WHEN 'refunding' THEN now() ELSE p.refunded_at END,
                verified_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now()
           FROM input i WHERE p.payment_id = i.payment_id AND (p.status = i.from_status) IS TRUE AND (SELECT count(*) FROM locked_jobs) >= 0
         RETURNING p.*, i.from_status),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT m.payment_id, m.from_status, m.status, m.settle_reason, $5::varchar,
                         jsonb_build_object('transaction_hash', i.tx_hash)
                         || CASE WHEN m.released_amount IS NOT NULL THEN jsonb_build_object(
                              'released_amount', m.released_amount::text, 'refunded_amount', (m.amount - m.released_amount)::text)
                            ELSE '{}'::jsonb END
                    FROM moved m JOIN input i USING (payment_id)),
       escrow_record AS (
         UPDATE payment_escrows e SET
                is_released = e.is_released OR m.status = 'released', released_at = CASE WHEN m.status = 'released' THEN now() ELSE e.released_at END,
                is_refunded = e.is_refunded OR m.status = 'refunded', refunded_at = CASE WHEN m.status = 'refunded' THEN now() ELSE e.refunded_at END,
                is_active = false, updated_at = now()
           FROM moved m WHERE e.payment_id = m.payment_id AND e.is_active)
       SELECT * FROM moved`,
      [
        settled.map((s) => s.payment.payment_id),
        settled.map((s) => s.payment.status),
        settled.map((s) => s.transactionHash),
        settled.map((s) => s.payment.job_id),
        actor,
      ],
    );
  }

  // ---------------------------------------------------------------- extension

  /**
   * escrowed → escrowed with its expiry `seconds` later, within `maxSeconds` of the hold,
   * logged (`escrow_extended` with the new expiry and the seconds added): a compare-and-set inside the
   * caller's transaction, which holds the job's lock. The lease it takes is the daemon's
   * copy of the expiry still to be updated (`confirmExtension` ends it; the re-drive
   * carries it on otherwise).
   */
  extendEscrow(
    sql: Sql,
    paymentId: string,
    seconds: number,
    maxSeconds: number,
    actor: string,
  ): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `WITH moved AS (
         -- Whole milliseconds: the expiry is sent to the daemon (and keys its call) as JSON's ISO text.
         UPDATE job_payments SET expires_at = date_trunc('milliseconds', expires_at + $2::int * interval '1 second'),
                next_attempt_at = now() + $4::int * interval '1 millisecond', updated_at = now()
          WHERE payment_id = $1 AND status = 'escrowed' AND expires_at > now()
            AND expires_at + $2::int * interval '1 second' <= escrowed_at + $3::int * interval '1 second'
         RETURNING *),
       logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor, details)
                  SELECT payment_id, 'escrowed', 'escrowed', 'escrow_extended', $5,
                         jsonb_build_object(
                           'expires_at', to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                           'seconds', $2::int)
                    FROM moved)
       SELECT * FROM moved`,
      [paymentId, seconds, maxSeconds, this.config.settlementLeaseMs, actor],
    );
  }

  /**
   * The daemon has the payment's current expiry: nothing more owed to it. Only while the
   * expiry is still the one sent (a later extension keeps its own lease).
   */
  confirmExtension(sql: Sql, payment: JobPayment): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `UPDATE job_payments SET next_attempt_at = NULL, last_error = NULL, updated_at = now()
        WHERE payment_id = $1 AND status = 'escrowed' AND expires_at = $2 RETURNING *`,
      [payment.payment_id, payment.expires_at],
    );
  }

  // ---------------------------------------------------------------- re-drive

  /** Keeps decided work for the re-drive, with exponential backoff and jitter. */
  postpone(sql: Sql, payment: JobPayment, lastError: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `UPDATE job_payments SET last_error = $2, updated_at = now(),
              next_attempt_at = now() + LEAST(60, 0.5 * power(2, LEAST(attempts, 10))) * (0.5 + random() / 2) * interval '1 second'
        WHERE payment_id = $1 AND status = $3 RETURNING *`,
      [payment.payment_id, lastError, payment.status],
    );
  }

  /** Claims payments whose lease ran out (SKIP LOCKED), leasing them again to the caller. */
  claimDue(sql: Sql, limit: number): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(
      `UPDATE job_payments SET attempts = attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
        WHERE payment_id IN (SELECT payment_id FROM job_payments
                              WHERE next_attempt_at <= now()
                              ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [limit, this.config.settlementLeaseMs],
    );
  }

  /** Nothing owed to the daemon any more: the payment leaves the re-drive queue. */
  stopRedrive(sql: Sql, payment: JobPayment): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(
      `UPDATE job_payments SET next_attempt_at = NULL, updated_at = now() WHERE payment_id = $1 AND status = $2 RETURNING *`,
      [payment.payment_id, payment.status],
    );
  }

  // ---------------------------------------------------------------- reads

  find(sql: Sql, paymentId: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = $1`, [paymentId]);
  }

  findMany(sql: Sql, paymentIds: string[]): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(`SELECT * FROM job_payments WHERE payment_id = ANY($1::uuid[])`, [paymentIds]);
  }

  /** The job's payment (the newest, should a failed one have been replaced). */
  findForJob(sql: Sql, jobId: string): Promise<JobPayment | undefined> {
    return sql.one<JobPayment>(`SELECT * FROM job_payments WHERE job_id = $1 ORDER BY created_at DESC LIMIT 1`, [
      jobId,
    ]);
  }

  /** Whether the job has a payment that did not fail (a job is paid at most once). */
  async hasLivePayment(sql: Sql, jobId: string): Promise<boolean> {
    return (
      (await sql.one(`SELECT 1 FROM job_payments WHERE job_id = $1 AND status <> 'failed'`, [jobId])) !== undefined
    );
  }

  /** The payments of these jobs still waiting for their hold. */
  pendingOfJobs(sql: Sql, jobIds: string[]): Promise<JobPayment[]> {
    return sql.rows<JobPayment>(`SELECT * FROM job_payments WHERE job_id = ANY($1::uuid[]) AND status = 'pending'`, [
      jobIds,
    ]);
  }

  /** The payments asked to settle with their job's state, the jobs locked in one order (job before payment). */
  lockForSettlement(sql: Sql, paymentIds: string[]): Promise<(JobPayment & { job_state: string })[]> {
    return sql.rows<JobPayment & { job_state: string }>(
      `SELECT p.*, j.state AS job_state FROM job_payments p JOIN job j ON j.job_id = p.job_id
        WHERE p.payment_id = ANY($1::uuid[]) ORDER BY j.job_id FOR UPDATE OF j`,
      [paymentIds],
    );
  }

  /** What each provider holds now (escrowed, or decided and not yet settled), per currency, exact. */
  heldByProvider(sql: Sql): Promise<{ provider_id: string; currency: string; held: string }[]> {
    return sql.rows<{ provider_id: string; currency: string; held: string }>(
      `SELECT provider_id, currency, sum(amount)::text AS held FROM job_payments
        WHERE status IN ('escrowed','releasing','refunding') GROUP BY provider_id, currency`,
    );
  }

  /** How many payments wait on the daemon, by status. */
  awaitingDaemon(sql: Sql): Promise<{ status: string; n: string }[]> {
    return sql.rows<{ status: string; n: string }>(
      `SELECT status, count(*) AS n FROM job_payments WHERE status IN ('pending','releasing','refunding') GROUP BY status`,
    );
  }
}
