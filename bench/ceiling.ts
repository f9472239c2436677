import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Pool } from 'pg';
import { onCleanup } from './processes';
import { seededIdSql } from './seed';
import { now, progress, round } from './util';

/**
 * The database's own limit for the coordinator's work: the same SQL statements issued
 * directly (pgbench when it is installed, else a plain `pg` script) against the same
 * database at the given concurrency, no HTTP, no Node, no wallet daemon.
 *
 * - create: one transaction = insert job; insert the payment already `escrowed` (its
 *   trigger updates the job: payment columns, deadline); insert the escrow row; insert the
 *   two audit events (pending, escrowed).
 * - release: one transaction = lock the payment (`SELECT … FOR UPDATE`); compare-and-set
 *   it to `released` (its trigger updates the job); insert the audit event; mark the
 *   escrow released. A refund is the same shape.
 * The coordinator needs two commits per paid job (`pending` before the daemon call, then
 * `escrowed`) and two per settlement (`releasing`, then `released`), so ~0.5× is the
 * ceiling's natural bound for a design that keeps those guarantees.
 *
 * Rows are written as client `bench-ceiling` with currency AITBC (no BTC miner could
 * poll them) and are deleted afterwards, so the API phases see the same database.
 */
export const CEILING_CLIENT = 'bench-ceiling';

export interface CeilingResult {
  name: string;
  tool: 'pgbench' | 'pg';
  clients: number;
  transactions: number;
  duration_s: number;
  tps: number;
  avg_latency_ms: number;
  failed: number;
}

const UUID7_SQL = `(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid`;
const PAYLOAD = `'{"job_type": "ai_inference", "parameters": {"model": "gpt-4", "prompt": "Hello"}}'`;
const ADDRESS = `'aitbc1bench000000000000000000000000000000000'`;

/** Statements of one create transaction; `$jid`, `$pid`, `$eid` are the ids returned by the previous ones. */
const CREATE_STATEMENTS = {
  job: `INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
        VALUES (${UUID7_SQL}, '${CEILING_CLIENT}', 'queued', ${PAYLOAD}, '{}', 3600, now(), now() + 3600 * interval '1 second', now())
        RETURNING job_id AS jid`,
  payment: (jid: string) => `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                               payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, escrowed_at, expires_at)
        VALUES (${UUID7_SQL}, ${jid}, '${CEILING_CLIENT}', 0.001, 'AITBC', 'escrowed', ${UUID7_SQL}::text, ${ADDRESS},
                ${ADDRESS}, ${ADDRESS}, 3600, now(), now(), now(), now() + 3600 * interval '1 second')
        RETURNING payment_id AS pid, escrow_id AS eid`,
  escrow: (pid: string, eid: string) => `INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, create_transaction_hash, created_at, updated_at)
        VALUES (${pid}, ${eid}, 0.001, 'AITBC', ${ADDRESS}, md5(random()::text) || md5(random()::text), now(), now())`,
  events: (pid: string) => `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
        VALUES (${pid}, NULL, 'pending', 'payment_created', '${CEILING_CLIENT}'), (${pid}, 'pending', 'escrowed', 'escrow_created', 'system')`,
};

const RELEASE_STATEMENTS = {
  lock: `SELECT p.payment_id AS pid FROM job_payments p
          WHERE p.payment_id = (SELECT payment_id FROM bench_ceiling_queue WHERE n = (SELECT nextval('bench_ceiling_seq')))
          FOR UPDATE`,
  payment: (pid: string) => `UPDATE job_payments SET status = 'released', miner_id = '${CEILING_CLIENT}', payee_address = ${ADDRESS},
               transaction_hash = md5(random()::text) || md5(random()::text), settle_reason = 'job_completed', settled_by = '${CEILING_CLIENT}',
               released_at = now(), verified_at = now(), updated_at = now()
          WHERE payment_id = ${pid} AND status = 'escrowed'`,
  event: (pid: string) => `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
        VALUES (${pid}, 'escrowed', 'released', 'job_completed', '${CEILING_CLIENT}')`,
  escrow: (pid: string) => `UPDATE payment_escrows SET is_released = true, is_active = false, released_at = now(), updated_at = now()
          WHERE payment_id = ${pid} AND is_active`,
};

export function pgbenchScript(kind: 'create' | 'release'): string {
  const s =
    kind === 'create'
      ? [
          'BEGIN;',
          `${CREATE_STATEMENTS.job} \\gset`,
          `${CREATE_STATEMENTS.payment(':jid::uuid')} \\gset`,
          `${CREATE_STATEMENTS.escrow(':pid::uuid', ':eid::varchar')};`,
          `${CREATE_STATEMENTS.events(':pid::uuid')};`,
          'END;',
        ]
      : [
          'BEGIN;',
          `${RELEASE_STATEMENTS.lock} \\gset`,
          `${RELEASE_STATEMENTS.payment(':pid::uuid')};`,
          `${RELEASE_STATEMENTS.event(':pid::uuid')};`,
          `${RELEASE_STATEMENTS.escrow(':pid::uuid')};`,
          'END;',
        ];
  // pgbench: a backslash command ends its line; SQL may span lines up to the semicolon.
  return s.map((line) => line.replace(/\n\s*/g, ' ')).join('\n') + '\n';
}

export function hasPgbench(): boolean {
  if (process.env.BENCH_NO_PGBENCH) return false;
  return spawnSync('pgbench', ['--version'], { stdio: 'ignore' }).status === 0;
}

let tmp: string | undefined;
function scriptFile(name: string, text: string): string {
  if (!tmp) {
    tmp = mkdtempSync(join(tmpdir(), 'coordinator-bench-'));
    const dir = tmp;
    onCleanup('pgbench scripts', async () => rmSync(dir, { recursive: true, force: true }));
  }
  const file = join(tmp, name);
  writeFileSync(file, text);
  return file;
}

/** Runs pgbench; `limit` is seconds (-T) or transactions per client (-t). */
async function pgbench(name: string, url: string, script: string, clients: number, limit: { seconds: number } | { perClient: number }): Promise<CeilingResult> {
  const args = ['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(clients, 2)), '-f', script];
  // -T counts from before the connections are made (~25–40 ms each on 2 cores); the tps
  // pgbench reports excludes that time, so the run is lengthened to keep `seconds` of work.
  if ('seconds' in limit) args.push('-T', String(Math.ceil(limit.seconds + (clients > 16 ? clients * 0.05 : 0))));
  else args.push('-t', String(limit.perClient));
  args.push(url);
  const began = now();
  const child = spawn('pgbench', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onCleanup(`pgbench ${name}`, async () => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const code = await new Promise<number | null>((done) => child.once('close', done));
  unregister();
  const seconds = (now() - began) / 1000;
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  const latency = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
  if (code !== 0 || !Number.isFinite(tps)) throw new Error(`pgbench ${name} failed (exit ${code}):\n${out.trim().split('\n').slice(-15).join('\n')}`);
  return { name, tool: 'pgbench', clients, transactions, duration_s: round(seconds, 2), tps: round(tps), avg_latency_ms: round(latency, 2), failed };
}

/** The same transactions with node-postgres, one connection per simulated client. */
async function pgScript(
  name: string,
  url: string,
  clients: number,
  limit: { seconds: number } | { perClient: number },
  transaction: (db: Client) => Promise<void>,
): Promise<CeilingResult> {
  const connections = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new Client({ connectionString: url, application_name: 'bench-ceiling' });
      await c.connect();
      return c;
    }),
  );
  let done = 0;
  let failed = 0;
  let latencyTotal = 0;
  const began = now();
  const deadline = 'seconds' in limit ? began + limit.seconds * 1000 : Infinity;
  try {
    await Promise.all(
      connections.map(async (db) => {
        for (let i = 0; 'perClient' in limit ? i < limit.perClient : now() < deadline; i++) {
          const t = now();
          try {
            await db.query('BEGIN');
            await transaction(db);
            await db.query('COMMIT');
            done++;
            latencyTotal += now() - t;
          } catch (error) {
            failed++;
            await db.query('ROLLBACK').catch(() => undefined);
            if (failed > 100) throw error;
          }
        }
      }),
    );
  } finally {
    await Promise.all(connections.map((c) => c.end().catch(() => undefined)));
  }
  const seconds = (now() - began) / 1000;
  return { name, tool: 'pg', clients, transactions: done, duration_s: round(seconds, 2), tps: round(done / seconds), avg_latency_ms: round(latencyTotal / Math.max(done, 1), 2), failed };
}

const createTx = async (db: Client) => {
  const { jid } = (await db.query(CREATE_STATEMENTS.job)).rows[0];
  const { pid, eid } = (await db.query(CREATE_STATEMENTS.payment('$1::uuid'), [jid])).rows[0];
  await db.query(CREATE_STATEMENTS.escrow('$1::uuid', '$2::varchar'), [pid, eid]);
  await db.query(CREATE_STATEMENTS.events('$1::uuid'), [pid]);
};

const releaseTx = async (db: Client) => {
  const row = (await db.query(RELEASE_STATEMENTS.lock)).rows[0];
  if (!row) throw new Error('release ceiling ran out of escrowed rows');
  await db.query(RELEASE_STATEMENTS.payment('$1::uuid'), [row.pid]);
  await db.query(RELEASE_STATEMENTS.event('$1::uuid'), [row.pid]);
  await db.query(RELEASE_STATEMENTS.escrow('$1::uuid'), [row.pid]);
};

export async function createCeiling(url: string, clients: number, seconds: number, usePgbench: boolean): Promise<CeilingResult> {
  const r = usePgbench
    ? await pgbench(`create×${clients}`, url, scriptFile('create.sql', pgbenchScript('create')), clients, { seconds })
    : await pgScript(`create×${clients}`, url, clients, { seconds }, createTx);
  progress(`  ceiling create (${r.tool}, ${clients} clients): ${r.tps} tx/s, avg ${r.avg_latency_ms} ms`);
  return r;
}

/** Queues the ceiling's escrowed rows for the release transactions (in creation order). */
export async function prepareReleaseQueue(db: Pool): Promise<number> {
  await db.query(`DROP TABLE IF EXISTS bench_ceiling_queue`);
  await db.query(`DROP SEQUENCE IF EXISTS bench_ceiling_seq`);
  await db.query(`CREATE UNLOGGED TABLE bench_ceiling_queue (n bigint PRIMARY KEY, payment_id uuid NOT NULL)`);
  await db.query(`CREATE SEQUENCE bench_ceiling_seq`);
  const { rowCount } = await db.query(
    `INSERT INTO bench_ceiling_queue SELECT row_number() OVER (ORDER BY payment_id), payment_id
       FROM job_payments WHERE client_id = $1 AND status = 'escrowed'`,
    [CEILING_CLIENT],
  );
  await db.query(`ANALYZE bench_ceiling_queue`);
  return rowCount ?? 0;
}

export async function releaseCeiling(url: string, clients: number, available: number, usePgbench: boolean): Promise<CeilingResult> {
  const perClient = Math.floor(available / clients);
  if (perClient < 1) throw new Error(`release ceiling: only ${available} escrowed rows for ${clients} clients`);
  const r = usePgbench
    ? await pgbench(`release×${clients}`, url, scriptFile('release.sql', pgbenchScript('release')), clients, { perClient })
    : await pgScript(`release×${clients}`, url, clients, { perClient }, releaseTx);
  progress(`  ceiling release (${r.tool}, ${clients} clients): ${r.tps} tx/s, avg ${r.avg_latency_ms} ms`);
  return r;
}

/** Removes everything the ceiling runs wrote, so the API phases see the database as before. */
export async function removeCeilingRows(db: Pool): Promise<void> {
  const client = await db.connect();
  try {
    const { rows } = await client.query(`SELECT rolsuper FROM pg_roles WHERE rolname = current_user`);
    // payment_events is append-only by trigger; replica mode skips triggers for this session only.
    if (rows[0]?.rolsuper) await client.query(`SET session_replication_role = replica`);
    else await client.query(`ALTER TABLE payment_events DISABLE TRIGGER payment_events_no_change`);
    await client.query('BEGIN');
    await client.query(`DELETE FROM payment_events WHERE payment_id IN (SELECT payment_id FROM job_payments WHERE client_id = $1)`, [CEILING_CLIENT]);
    await client.query(`DELETE FROM payment_escrows WHERE payment_id IN (SELECT payment_id FROM job_payments WHERE client_id = $1)`, [CEILING_CLIENT]);
    await client.query(`DELETE FROM job_payments WHERE client_id = $1`, [CEILING_CLIENT]);
    await client.query(`DELETE FROM job WHERE client_id = $1`, [CEILING_CLIENT]);
    await client.query('COMMIT');
    if (rows[0]?.rolsuper) await client.query(`RESET session_replication_role`);
    else await client.query(`ALTER TABLE payment_events ENABLE TRIGGER payment_events_no_change`);
    await client.query(`DROP TABLE IF EXISTS bench_ceiling_queue`);
    await client.query(`DROP SEQUENCE IF EXISTS bench_ceiling_seq`);
    await client.query(`VACUUM (ANALYZE) job, job_payments, payment_escrows, payment_events`);
  } finally {
    client.release();
  }
}

// ------------------------------------------------------------------ reads

export type ReadKind = 'get_payment' | 'list_first' | 'list_deep';

/** The read endpoints' main query (what the coordinator runs per request), by pgbench or pg. */
export async function readCeiling(
  kind: ReadKind,
  url: string,
  clients: number,
  seconds: number,
  size: number,
  clientId: string,
  baseMs: number,
  usePgbench: boolean,
): Promise<CeilingResult> {
  const sql: Record<ReadKind, string> = {
    get_payment: `SELECT * FROM job_payments WHERE payment_id = ${seededIdSql('p', ':i::bigint', baseMs)};`,
    list_first: `SELECT * FROM job WHERE client_id = '${clientId}' ORDER BY job_id DESC LIMIT 21;`,
    list_deep: `SELECT * FROM job WHERE client_id = '${clientId}' AND job_id < ${seededIdSql('j', ':i::bigint', baseMs)} ORDER BY job_id DESC LIMIT 21;`,
  };
  const name = `${kind}@${size}×${clients}`;
  if (usePgbench) {
    const script = `\\set i random(0, ${size - 1})\n${sql[kind]}\n`;
    return pgbench(name, url, scriptFile(`${kind}.sql`, script), clients, { seconds });
  }
  const text = sql[kind].replace(/:i::bigint/g, '$1::bigint').replace(/;$/, '');
  return pgScriptReads(name, url, clients, seconds, text, size);
}

async function pgScriptReads(name: string, url: string, clients: number, seconds: number, text: string, size: number): Promise<CeilingResult> {
  const usesParam = text.includes('$1');
  const db = new Pool({ connectionString: url, max: clients, application_name: 'bench-ceiling' });
  let done = 0;
  let latencyTotal = 0;
  const began = now();
  const deadline = began + seconds * 1000;
  try {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (now() < deadline) {
          const t = now();
          await db.query(text, usesParam ? [Math.floor(Math.random() * size)] : []);
          done++;
          latencyTotal += now() - t;
        }
      }),
    );
  } finally {
    await db.end();
  }
  const s = (now() - began) / 1000;
  return { name, tool: 'pg', clients, transactions: done, duration_s: round(s, 2), tps: round(done / s), avg_latency_ms: round(latencyTotal / Math.max(done, 1), 2), failed: 0 };
}

// ------------------------------------------------------------------ sweep decisions

/**
 * The deadline sweep's decision statements (JobsService.expireDue → decideForExpiredJobs)
 * run directly, one batch of `batch` per transaction like the sweep, over `count` due
 * escrowed jobs inserted by SQL for the purpose (client bench-ceiling). Returns
 * decisions per second; the rows are deleted with the other ceiling rows afterwards.
 */
export async function sweepDecisionCeiling(db: Pool, count: number, batch: number): Promise<{ decisions: number; seconds: number; per_s: number }> {
  // Due escrowed jobs, by the create transaction's shape but in bulk.
  await db.query(
    `WITH j AS (
       INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
       SELECT ${seededIdSql('j', 'i', 0)}, $1, 'queued', ${PAYLOAD}, '{}', 3600, now(), now() - interval '1 second', now()
         FROM generate_series(1, $2::bigint) i
       RETURNING job_id)
     SELECT count(*) FROM j`,
    [CEILING_CLIENT, count],
  );
  await db.query(
    `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                               payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, escrowed_at, expires_at)
     SELECT ${seededIdSql('p', 'i', 0)}, ${seededIdSql('j', 'i', 0)}, $1, 0.001, 'AITBC', 'escrowed', ${seededIdSql('e', 'i', 0)}::text,
            ${ADDRESS}, ${ADDRESS}, ${ADDRESS}, 3600, now(), now(), now(), now() - interval '1 second'
       FROM generate_series(1, $2::bigint) i`,
    [CEILING_CLIENT, count],
  );
  await db.query(`INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, created_at, updated_at)
                  SELECT payment_id, escrow_id, amount, currency, escrow_address, now(), now() FROM job_payments
                   WHERE client_id = $1 AND status = 'escrowed' AND expires_at <= now()`, [CEILING_CLIENT]);
  await db.query(`ANALYZE job; ANALYZE job_payments`);

  const client = await db.connect();
  let decided = 0;
  const began = now();
  try {
    for (;;) {
      await client.query('BEGIN');
      const ended = await client.query<{ job_id: string; payment_id: string | null }>(
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
        [batch],
      );
      const ids = ended.rows.filter((r) => r.payment_id).map((r) => r.job_id);
      const moved = await client.query(
        `WITH due AS (
           SELECT payment_id, CASE WHEN expires_at <= now() THEN 'escrow_expired' ELSE 'job_expired' END AS reason
             FROM job_payments WHERE job_id = ANY($1::uuid[]) AND status = 'escrowed' FOR UPDATE),
         moved AS (
           UPDATE job_payments p SET status = 'refunding', settle_reason = due.reason, settled_by = 'system',
                  next_attempt_at = now() + $2 * interval '1 millisecond', updated_at = now()
             FROM due WHERE p.payment_id = due.payment_id AND p.status = 'escrowed'
           RETURNING p.*, due.reason),
         logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                    SELECT payment_id, 'escrowed', 'refunding', reason, 'system' FROM moved)
         SELECT * FROM moved`,
        [ids, 3_600_000],
      );
      await client.query(
        `WITH moved AS (
           UPDATE job_payments SET status = 'failed', failure_reason = 'escrow_not_confirmed_before_deadline',
                  next_attempt_at = now(), updated_at = now()
            WHERE job_id = ANY($1::uuid[]) AND status = 'pending'
           RETURNING payment_id),
         logged AS (INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
                    SELECT payment_id, 'pending', 'failed', 'escrow_not_confirmed_before_deadline', 'system' FROM moved)
         SELECT * FROM moved`,
        [ids],
      );
      await client.query('COMMIT');
      decided += moved.rowCount ?? 0;
      if ((ended.rowCount ?? 0) < batch) break;
    }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
  const seconds = (now() - began) / 1000;
  const per_s = round(decided / seconds);
  progress(`  ceiling sweep decisions (pg, batches of ${batch}): ${decided} in ${round(seconds, 2)}s = ${per_s}/s`);
  return { decisions: decided, seconds: round(seconds, 3), per_s };
}
