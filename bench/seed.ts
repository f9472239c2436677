import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { progress, round } from './util';

/**
 * Bulk history for the read benchmarks: settled paid jobs inserted by SQL
 * (`INSERT … SELECT generate_series`), consistent with the schema and its CHECKs — jobs
 * `completed` with the payment `released` to a miner (9 in 10) or `canceled` with it
 * `refunded` (1 in 10), each with its inactive `payment_escrows` row and the job's
 * payment columns filled in as the mirror trigger would. Rows are final, so no sweep,
 * poll or re-drive ever touches them. Ids are UUIDv7-shaped (48-bit millisecond time +
 * md5 of the row number), one millisecond apart, starting `baseMs`: older than anything
 * the benchmark creates through the API, and computable on both sides (SQL and JS), so
 * the load generator can ask for random existing rows without reading them first.
 *
 * The mirror trigger (and FK checks) are skipped during the seed with
 * `session_replication_role = replica` when the role is a superuser, otherwise with
 * `ALTER TABLE job_payments DISABLE TRIGGER job_payments_mirror_inserted` (re-enabled after).
 * payment_events rows are not seeded: nothing measured reads them.
 */
export interface SeedSpec {
  clientId: string;
  minerId: string;
  wallet: string;
  payee: string;
  baseMs: number;
}

/** The seeded id of row `i` for tag j (job), p (payment), e (escrow). */
export function seededId(tag: 'j' | 'p' | 'e', i: number, baseMs: number): string {
  const hex = (baseMs + i).toString(16).padStart(12, '0');
  const h = createHash('md5').update(`${tag}${i}`).digest('hex');
  const s = `${hex}7${h.slice(0, 3)}8${h.slice(3, 18)}`;
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

/** The same id as a SQL expression over a bigint expression `i`. */
export function seededIdSql(tag: 'j' | 'p' | 'e', i: string, baseMs: number): string {
  return `(lpad(to_hex(${baseMs}::bigint + ${i}), 12, '0') || '7' || substr(md5('${tag}' || ${i}), 1, 3) || '8' || substr(md5('${tag}' || ${i}), 4, 15))::uuid`;
}

const CHUNK = 200_000;

export async function seedRows(db: Client, from: number, to: number, spec: SeedSpec): Promise<number> {
  const began = Date.now();
  const { rows } = await db.query(`SELECT rolsuper FROM pg_roles WHERE rolname = current_user`);
  const superuser = rows[0]?.rolsuper === true;
  if (superuser) await db.query(`SET session_replication_role = replica`);
  else await db.query(`ALTER TABLE job_payments DISABLE TRIGGER job_payments_mirror_inserted`);
  try {
    for (let lo = from; lo < to; lo += CHUNK) {
      const hi = Math.min(to, lo + CHUNK);
      await db.query('BEGIN');
      await db.query(typed(jobSql(spec)), [lo, hi - 1, spec.clientId, spec.minerId]);
      await db.query(typed(paymentSql(spec)), [lo, hi - 1, spec.clientId, spec.minerId, spec.wallet, spec.payee]);
      await db.query(typed(escrowSql(spec)), [lo, hi - 1, spec.wallet]);
      await db.query('COMMIT');
      if (to - from > CHUNK)
        progress(`  seeded ${hi.toLocaleString('en-US')} of ${to.toLocaleString('en-US')} payments`);
    }
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    if (superuser) await db.query(`RESET session_replication_role`);
    else await db.query(`ALTER TABLE job_payments ENABLE TRIGGER job_payments_mirror_inserted`);
  }
  await db.query(`VACUUM (ANALYZE) job, job_payments, payment_escrows`);
  // Flush the seeded pages now, so no checkpoint triggered by them runs during the measured reads.
  if (superuser) await db.query(`CHECKPOINT`);
  const seconds = (Date.now() - began) / 1000;
  progress(
    `  seeded rows ${from.toLocaleString('en-US')}..${(to - 1).toLocaleString('en-US')} in ${round(seconds)}s (+ VACUUM ANALYZE${superuser ? ', CHECKPOINT' : ''})`,
  );
  return seconds;
}

/** Parameters from $3 on are text (ids, addresses); spelled out so each has one type. */
const typed = (sql: string) => sql.replace(/\$([3-9])(?![0-9]|::)/g, '$$$1::text');

const series = (spec: SeedSpec) =>
  `SELECT i, to_timestamp((${spec.baseMs}::bigint + i) / 1000.0) AS ts, (i % 10 = 0) AS refunded FROM generate_series($1::bigint, $2::bigint) AS i`;

function jobSql(spec: SeedSpec): string {
  return `
    INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at,
                     assigned_miner_id, started_at, finished_at, result, error,
                     payment_id, payment_status, payment_amount, payment_currency, updated_at)
    SELECT ${seededIdSql('j', 'i', spec.baseMs)}, $3,
           CASE WHEN refunded THEN 'canceled' ELSE 'completed' END,
           '{"job_type": "ai_inference", "parameters": {"model": "gpt-4", "prompt": "Hello"}}'::jsonb, '{}'::jsonb,
           900, ts, ts + interval '900 seconds',
           CASE WHEN refunded THEN NULL ELSE $4 END,
           CASE WHEN refunded THEN NULL ELSE ts + interval '1 second' END,
           ts + interval '2 seconds',
           CASE WHEN refunded THEN NULL ELSE '{"text": "Hi!"}'::jsonb END,
           CASE WHEN refunded THEN 'canceled by ' || $3 ELSE NULL END,
           ${seededIdSql('p', 'i', spec.baseMs)},
           CASE WHEN refunded THEN 'refunded' ELSE 'released' END,
           0.001, 'BTC', ts + interval '2 seconds'
      FROM (${series(spec)}) s`;
}

function paymentSql(spec: SeedSpec): string {
  return `
    INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payment_method,
                              escrow_id, escrow_address, payer_address, refund_address, miner_id, payee_address,
                              transaction_hash, refund_transaction_hash, escrow_timeout_seconds, settle_reason, settled_by,
                              verified_at, attempts, next_attempt_at, created_at, updated_at, escrowed_at,
                              released_at, refunded_at, expires_at)
    SELECT ${seededIdSql('p', 'i', spec.baseMs)}, ${seededIdSql('j', 'i', spec.baseMs)}, $3, 0.001, 'BTC',
           CASE WHEN refunded THEN 'refunded' ELSE 'released' END, 'escrow',
           ${seededIdSql('e', 'i', spec.baseMs)}::text, $5, $5, $5,
           CASE WHEN refunded THEN NULL ELSE $4 END,
           CASE WHEN refunded THEN NULL ELSE $6 END,
           CASE WHEN refunded THEN NULL ELSE md5('t' || i) || md5('u' || i) END,
           CASE WHEN refunded THEN md5('t' || i) || md5('u' || i) ELSE NULL END,
           3600,
           CASE WHEN refunded THEN 'job_canceled' ELSE 'job_completed' END,
           CASE WHEN refunded THEN $3 ELSE $4 END,
           ts + interval '2 seconds', 0, NULL, ts, ts + interval '2 seconds', ts + interval '50 milliseconds',
           CASE WHEN refunded THEN NULL ELSE ts + interval '2 seconds' END,
           CASE WHEN refunded THEN ts + interval '2 seconds' ELSE NULL END,
           ts + interval '3600 seconds'
      FROM (${series(spec)}) s`;
}

function escrowSql(spec: SeedSpec): string {
  return `
    INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, is_active, is_released, is_refunded,
                                 create_transaction_hash, created_at, updated_at, released_at, refunded_at)
    SELECT ${seededIdSql('p', 'i', spec.baseMs)}, ${seededIdSql('e', 'i', spec.baseMs)}::text, 0.001, 'BTC', $3,
           false, NOT refunded, refunded, md5('c' || i) || md5('d' || i),
           ts, ts + interval '2 seconds',
           CASE WHEN refunded THEN NULL ELSE ts + interval '2 seconds' END,
           CASE WHEN refunded THEN ts + interval '2 seconds' ELSE NULL END
      FROM (${series(spec)}) s`;
}
