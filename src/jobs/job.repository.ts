// Owns the job table.
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { JobPayment } from '../payments/job-payment.entity';
import { JobFacts, PaymentJobs, RefundCause } from '../payments/payment-jobs';
import type { Job } from './job.entity';

/** A job to insert as `queued`. */
export interface NewJob {
  job_id: string;
  client_id: string;
  /** JSON text. */
  payload: string;
  /** JSON text. */
  constraints: string;
  ttl_seconds: number;
}

/** What a miner's report writes on its job. */
export interface JobReport {
  to: 'completed' | 'failed';
  /** JSON text, or null. */
  result: string | null;
  /** JSON text, or null. */
  metrics: string | null;
  error: string | null;
}

/** A miner's poll: who, where it is paid, and the currencies of the paid jobs it may take. */
export interface Poll {
  miner_id: string;
  /** Currency codes the payout address is valid for (empty: unpaid jobs only). */
  payable: string[];
  /** The payout address read before the claim (null: not registered). */
  payout_address: string | null;
}

/** Above every UUID: the first page of a newest-first listing. */
const AFTER_LAST = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/**
 * Every statement on `job`, each written out whole: the job lifecycle for JobsService and,
 * as `PaymentJobs`, the statements Payments makes on a payment's job. Each transition is
 * a compare-and-set UPDATE whose row count decides. `job.payment_*` is never written here:
 * a trigger mirrors it from the payment row in the same statement.
 *
 * Two statements span tables for one round trip: a paid job is inserted together with
 * its payment by `JobPaymentsRepository.insertPendingWithJob` (the payment's rules decide
 * that statement), and `claimNext` records the payee on the claimed job's payment.
 *
 * A state or status test on a set of ids is written `(… = …) IS TRUE`, so that the rows
 * are looked up by primary key and never by walking a partial or status index the
 * statistics happen to favour (see `JobPaymentsRepository`).
 */
@Injectable()
export class JobRepository extends PaymentJobs {
  // ---------------------------------------------------------------- creation and reads

  insert(sql: Sql, job: NewJob): Promise<Job | undefined> {
    return sql.one<Job>(
      `INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
       VALUES ($1, $2, 'queued', $3, $4, $5::int, now(), now() + $5::int * interval '1 second', now()) RETURNING *`,
      [job.job_id, job.client_id, job.payload, job.constraints, job.ttl_seconds],
    );
  }

  async insertMany(sql: Sql, jobs: NewJob[]): Promise<void> {
    await sql.rows(
      `INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
       SELECT job_id, client_id, 'queued', payload, constraints, ttl, now(), now() + ttl * interval '1 second', now()
         FROM unnest($1::uuid[], $2::jsonb[], $3::jsonb[], $4::int[], $5::varchar[]) AS i(job_id, payload, constraints, ttl, client_id)`,
      [
        jobs.map((j) => j.job_id),
        jobs.map((j) => j.payload),
        jobs.map((j) => j.constraints),
        jobs.map((j) => j.ttl_seconds),
        jobs.map((j) => j.client_id),
      ],
    );
  }

  find(sql: Sql, jobId: string): Promise<Job | undefined> {
    return sql.one<Job>(`SELECT * FROM job WHERE job_id = $1`, [jobId]);
  }

  findMany(sql: Sql, jobIds: string[]): Promise<Job[]> {
    return sql.rows<Job>(`SELECT * FROM job WHERE job_id = ANY($1::uuid[])`, [jobIds]);
  }

  /** A client's jobs, newest first, after the cursor `after` (job ids are UUIDv7: id order is time order). */
  listForClient(sql: Sql, clientId: string, limit: number, after: string | undefined): Promise<Job[]> {
    return sql.rows<Job>(`SELECT * FROM job WHERE client_id = $2 AND job_id < $3 ORDER BY job_id DESC LIMIT $1`, [
      limit,
      clientId,
      after ?? AFTER_LAST,
    ]);
  }

  /** Every client's jobs (admin), newest first, after the cursor `after`. */
  listAll(sql: Sql, limit: number, after: string | undefined): Promise<Job[]> {
    return sql.rows<Job>(`SELECT * FROM job WHERE job_id < $2 ORDER BY job_id DESC LIMIT $1`, [
      limit,
      after ?? AFTER_LAST,
    ]);
  }

  // ---------------------------------------------------------------- transitions

  /** queued|running → canceled. */
  cancel(sql: Sql, jobId: string, by: string): Promise<Job | undefined> {
    return sql.one<Job>(
      `UPDATE job SET state = 'canceled', error = 'canceled by ' || $2::text, finished_at = now(), updated_at = now()
        WHERE job_id = $1 AND state IN ('queued','running') RETURNING *`,
      [jobId, by],
    );
  }

  /** running → completed|failed by its assigned miner, refused after the deadline even before the sweep ran. */
  report(sql: Sql, jobId: string, minerId: string, report: JobReport): Promise<Job | undefined> {
    return sql.one<Job>(
      `UPDATE job SET state = $3, result = $4, metrics = $5, error = $6, finished_at = now(), updated_at = now()
        WHERE job_id = $1 AND state = 'running' AND assigned_miner_id = $2 AND expires_at > now() RETURNING *`,
      [jobId, minerId, report.to, report.result, report.metrics, report.error],
    );
  }

  /**
   * `report` for many jobs at once (coalesced reports; each job at most once): the jobs that
   * moved. The jobs are locked first, in `job_id` order (the lock order of every statement
   * that locks several jobs), so this never deadlocks with a batch or a sweep.
   */
  reportMany(sql: Sql, reports: (JobReport & { job_id: string; miner_id: string })[]): Promise<Job[]> {
    return sql.rows<Job>(
      `WITH locked_jobs AS (SELECT job_id FROM job WHERE job_id = ANY($1::uuid[]) ORDER BY job_id FOR UPDATE)
       UPDATE job SET state = r.to_state, result = r.result::jsonb, metrics = r.metrics::jsonb, error = r.error,
              finished_at = now(), updated_at = now()
         FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[], $5::text[], $6::text[])
              AS r(job_id, miner_id, to_state, result, metrics, error)
        WHERE job.job_id = r.job_id AND (job.state = 'running') IS TRUE AND job.assigned_miner_id = r.miner_id
          AND job.expires_at > now() AND (SELECT count(*) FROM locked_jobs) >= 0
        RETURNING job.*`,
      [
        reports.map((r) => r.job_id),
        reports.map((r) => r.miner_id),
        reports.map((r) => r.to),
        reports.map((r) => r.result),
        reports.map((r) => r.metrics),
        reports.map((r) => r.error),
      ],
    );
  }

  /**
   * queued → running for the oldest dispatchable job, and the payee recorded on its
   * payment, in one statement. Fail closed: a job with a payment is dispatchable only while
   * escrowed and in a currency the miner can be paid in; the payout address read before
   * must still be the miner's (else nothing is claimed and the miner polls again), so a
   * concurrent re-registration can never leave a stale payee. SKIP LOCKED: concurrent polls
   * never get the same job.
   */
  claimNext(sql: Sql, minerId: string, payable: string[], payoutAddress: string | null): Promise<Job | undefined> {
    return sql.one<Job>(
      `WITH job_row AS (
         UPDATE job SET state = 'running', assigned_miner_id = $1, started_at = now(), updated_at = now()
          WHERE job_id = (
            SELECT job_id FROM job
             WHERE state = 'queued' AND expires_at > now()
               AND (payment_id IS NULL OR (payment_status = 'escrowed' AND payment_currency = ANY($2::varchar[])))
             ORDER BY job_id LIMIT 1 FOR UPDATE SKIP LOCKED)
            AND ($3::varchar IS NULL OR EXISTS (SELECT 1 FROM miner WHERE miner_id = $1 AND payout_address = $3))
          RETURNING *),
       payee AS (
         UPDATE job_payments p SET miner_id = $1, payee_address = $3, updated_at = now()
           FROM job_row j WHERE p.payment_id = j.payment_id AND (p.status = 'escrowed') IS TRUE)
       SELECT * FROM job_row`,
      [minerId, payable, payoutAddress],
    );
  }

  /**
   * `claimNext` for many polls at once (coalesced polls whose miners are paid in the same
   * currencies): one walk of the dispatch index claims up to one job per poll, oldest job
   * to the earliest poll, and records each payee. A poll whose payout address changed
   * since it was read gets nothing (its miner polls again), as alone. Returns the claimed
   * job by the poll's index.
   */
  async claimForEach(sql: Sql, payable: string[], polls: Poll[]): Promise<Map<number, Job>> {
    const rows = await sql.rows<Job & { poll_index: number }>(
      `WITH polls AS (
         SELECT p.poll_index, p.miner_id, p.payout_address, row_number() OVER (ORDER BY p.poll_index) AS k
           FROM unnest($1::varchar[], $2::varchar[]) WITH ORDINALITY AS p(miner_id, payout_address, poll_index)
          WHERE p.payout_address IS NULL
             OR EXISTS (SELECT 1 FROM miner m WHERE m.miner_id = p.miner_id AND m.payout_address = p.payout_address)),
       picked AS (
         SELECT job_id, row_number() OVER (ORDER BY job_id) AS k FROM (
           SELECT job_id FROM job
            WHERE state = 'queued' AND expires_at > now()
              AND (payment_id IS NULL OR (payment_status = 'escrowed' AND payment_currency = ANY($3::varchar[])))
            ORDER BY job_id LIMIT (SELECT count(*) FROM polls) FOR UPDATE SKIP LOCKED) AS free),
       job_rows AS (
         UPDATE job SET state = 'running', assigned_miner_id = polls.miner_id, started_at = now(), updated_at = now()
           FROM picked JOIN polls USING (k)
          WHERE job.job_id = picked.job_id
          RETURNING job.*, polls.poll_index, polls.payout_address AS payee),
       payee AS (
         UPDATE job_payments p SET miner_id = j.assigned_miner_id, payee_address = j.payee, updated_at = now()
           FROM job_rows j WHERE p.payment_id = j.payment_id AND (p.status = 'escrowed') IS TRUE)
       SELECT * FROM job_rows`,
      [polls.map((p) => p.miner_id), polls.map((p) => p.payout_address), payable],
    );
    return new Map(
      rows.map(({ poll_index, payee: _payee, ...job }: Job & { poll_index: number; payee?: string }) => [
        Number(poll_index) - 1,
        job,
      ]),
    );
  }

  /**
   * Ends up to `limit` live jobs past their deadline (claimed with SKIP LOCKED, so every
   * instance can sweep at once): expired, or failed when the payment never got escrowed.
   */
  expireDue(sql: Sql, limit: number): Promise<{ job_id: string; payment_id: string | null }[]> {
    return sql.rows<{ job_id: string; payment_id: string | null }>(
      `WITH due AS (
         SELECT job_id FROM job WHERE state IN ('queued','running') AND expires_at <= now()
          ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
       UPDATE job SET
         state = CASE WHEN payment_status = 'pending' THEN 'failed' ELSE 'expired' END,
         error = CASE WHEN payment_status = 'pending' THEN 'payment could not be escrowed before the deadline'
                      ELSE 'deadline passed at ' || to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END,
         finished_at = now(), updated_at = now()
       FROM due WHERE job.job_id = due.job_id
       RETURNING job.job_id, job.payment_id`,
      [limit],
    );
  }

  // ---------------------------------------------------------------- extension

  /** The job row, locked (job before payment, always), with the database's clock, for an extension. */
  lockForExtension(sql: Sql, jobId: string): Promise<(Job & { db_now: Date }) | undefined> {
    return sql.one<Job & { db_now: Date }>(`SELECT *, now() AS db_now FROM job WHERE job_id = $1 FOR UPDATE`, [jobId]);
  }

  /**
   * A live job's deadline, not yet passed, `seconds` later (its TTL with it), within
   * `maxTtlSeconds` of its request: a compare-and-set (no row: final, past, or beyond the maximum).
   */
  extendDeadline(sql: Sql, jobId: string, seconds: number, maxTtlSeconds: number): Promise<Job | undefined> {
    return sql.one<Job>(
      `UPDATE job SET ttl_seconds = ttl_seconds + $2::int, expires_at = expires_at + $2::int * interval '1 second',
              updated_at = now()
        WHERE job_id = $1 AND state IN ('queued','running') AND expires_at > now()
          AND expires_at + $2::int * interval '1 second' <= requested_at + $3::int * interval '1 second'
       RETURNING *`,
      [jobId, seconds, maxTtlSeconds],
    );
  }

  // ---------------------------------------------------------------- for Payments (PaymentJobs)

  lockJob(sql: Sql, jobId: string): Promise<JobFacts | undefined> {
    return sql.one<JobFacts>(
      `SELECT job_id, client_id, state, assigned_miner_id FROM job WHERE job_id = $1 FOR UPDATE`,
      [jobId],
    );
  }

  async endLiveJobs(sql: Sql, payments: JobPayment[], cause: RefundCause): Promise<void> {
    await sql.rows(
      `UPDATE job SET state = $2, error = 'payment refunded: ' || r.reason, finished_at = now(), updated_at = now()
         FROM unnest($1::uuid[], $3::text[]) AS r(job_id, reason)
        WHERE job.job_id = r.job_id AND (state IN ('queued','running')) IS TRUE`,
      [
        payments.map((p) => p.job_id),
        cause === 'escrow_expired' ? 'expired' : 'canceled',
        payments.map((p) => p.settle_reason ?? cause),
      ],
    );
  }

  async failLiveJob(sql: Sql, payment: JobPayment, error: string): Promise<void> {
    await sql.rows(
      `UPDATE job SET state = 'failed', error = $2, finished_at = now(), updated_at = now()
        WHERE job_id = $1 AND state IN ('queued','running')`,
      [payment.job_id, error],
    );
  }

  async oldestOverdueEscrowSeconds(sql: Sql): Promise<number> {
    const overdue = await sql.one<{ seconds: number | null }>(
      `SELECT EXTRACT(EPOCH FROM now() - min(expires_at))::float8 AS seconds FROM job
        WHERE state IN ('queued','running') AND expires_at <= now() AND payment_status = 'escrowed'`,
    );
    return overdue?.seconds ?? 0;
  }
}
