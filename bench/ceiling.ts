import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
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
  payment: (
    jid: string,
  ) => `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                               payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, escrowed_at, expires_at)
        VALUES (${UUID7_SQL}, ${jid}, '${CEILING_CLIENT}', 0.001, 'AITBC', 'escrowed', ${UUID7_SQL}::text, ${ADDRESS},
                ${ADDRESS}, ${ADDRESS}, 3600, now(), now(), now(), now() + 3600 * interval '1 second')
        RETURNING payment_id AS pid, escrow_id AS eid`,
  escrow: (
    pid: string,
    eid: string,
  ) => `INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, create_transaction_hash, created_at, updated_at)
        VALUES (${pid}, ${eid}, 0.001, 'AITBC', ${ADDRESS}, md5(random()::text) || md5(random()::text), now(), now())`,
  events: (pid: string) => `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
        VALUES (${pid}, NULL, 'pending', 'payment_created', '${CEILING_CLIENT}'), (${pid}, 'pending', 'escrowed', 'escrow_created', 'system')`,
};

const RELEASE_STATEMENTS = {
  lock: `SELECT p.payment_id AS pid FROM job_payments p
          WHERE p.payment_id = (SELECT payment_id FROM bench_ceiling_queue WHERE n = (SELECT nextval('bench_ceiling_seq')))
          FOR UPDATE`,
  payment: (
    pid: string,
  ) => `UPDATE job_payments SET status = 'released', miner_id = '${CEILING_CLIENT}', payee_address = ${ADDRESS},
               transaction_hash = md5(random()::text) || md5(random()::text), settle_reason = 'job_completed', settled_by = '${CEILING_CLIENT}',
               released_at = now(), verified_at = now(), updated_at = now()
          WHERE payment_id = ${pid} AND status = 'escrowed'`,
  event: (pid: string) => `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
        VALUES (${pid}, 'escrowed', 'released', 'job_completed', '${CEILING_CLIENT}')`,
  escrow: (
    pid: string,
  ) => `UPDATE payment_escrows SET is_released = true, is_active = false, released_at = now(), updated_at = now()
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
async function pgbench(
  name: string,
  url: string,
  script: string,
  clients: number,
  limit: { seconds: number } | { perClient: number },
): Promise<CeilingResult> {
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
  if (code !== 0 || !Number.isFinite(tps))
    throw new Error(`pgbench ${name} failed (exit ${code}):\n${out.trim().split('\n').slice(-15).join('\n')}`);
  return {
    name,
    tool: 'pgbench',
    clients,
    transactions,
    duration_s: round(seconds, 2),
    tps: round(tps),
    avg_latency_ms: round(latency, 2),
    failed,
  };
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
  return {
    name,
    tool: 'pg',
    clients,
    transactions: done,
    duration_s: round(seconds, 2),
    tps: round(done / seconds),
    avg_latency_ms: round(latencyTotal / Math.max(done, 1), 2),
    failed,
  };
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

export async function createCeiling(
  url: string,
  clients: number,
  seconds: number,
  usePgbench: boolean,
): Promise<CeilingResult> {
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

export async function releaseCeiling(
  url: string,
  clients: number,
  available: number,
  usePgbench: boolean,
): Promise<CeilingResult> {
  const perClient = Math.floor(available / clients);
  if (perClient < 1) throw new Error(`release ceiling: only ${available} escrowed rows for ${clients} clients`);
  const r = usePgbench
    ? await pgbench(`release×${clients}`, url, scriptFile('release.sql', pgbenchScript('release')), clients, {
        perClient,
      })
    : await pgScript(`release×${clients}`, url, clients, { perClient }, releaseTx);
  progress(`  ceiling release (${r.tool}, ${clients} clients): ${r.tps} tx/s, avg ${r.avg_latency_ms} ms`);
  return r;
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

async function pgScriptReads(
  name: string,
  url: string,
  clients: number,
  seconds: number,
  text: string,
  size: number,
): Promise<CeilingResult> {
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
  return {
    name,
    tool: 'pg',
    clients,
    transactions: done,
    duration_s: round(s, 2),
    tps: round(done / s),
    avg_latency_ms: round(latencyTotal / Math.max(done, 1), 2),
    failed: 0,
  };
}

// ------------------------------------------------------------------ sweep decisions

/**
 * The deadline sweep's decision statements (JobsService.expireDue → decideForExpiredJobs)
 * run directly, one batch of `batch` per transaction like the sweep, over `count` due
 * escrowed jobs inserted by SQL for the purpose (client bench-ceiling). Returns
 * decisions per second; the rows are deleted with the other ceiling rows afterwards.
 */
export async function sweepDecisionCeiling(
  db: Pool,
  count: number,
  batch: number,
): Promise<{ decisions: number; seconds: number; per_s: number }> {
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
  await db.query(
    `INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, created_at, updated_at)
                  SELECT payment_id, escrow_id, amount, currency, escrow_address, now(), now() FROM job_payments
                   WHERE client_id = $1 AND status = 'escrowed' AND expires_at <= now()`,
    [CEILING_CLIENT],
  );
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

// ------------------------------------------------------------------ batched (group commit), both databases

export interface GroupCeilingResult extends CeilingResult {
  /** Items per transaction. */
  group: number;
  items: number;
  items_per_s: number;
  /** What one group does: which databases, how many commits. */
  work: string;
}

/** Wallet rows of the ceiling: AITBC accounts under this address prefix, keys under KEY_PREFIX (deleted afterwards). */
const WALLET_PREFIX = 'aitbc1benchceil';
const KEY_PREFIX = 'bench-ceiling-';
const hash = () => randomBytes(32).toString('hex');

/** One transaction on `db`: BEGIN, the work, COMMIT (ROLLBACK and rethrow on failure). */
async function inTx<T>(db: Client, work: () => Promise<T>): Promise<T> {
  await db.query('BEGIN');
  try {
    const out = await work();
    await db.query('COMMIT');
    return out;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * `clients` workers, each with a connection to the coordinator's database and one to the
 * wallet daemon's; each group runs `transaction` (which opens its own transactions).
 */
async function groupRun(
  name: string,
  urls: { url: string; walletUrl: string },
  clients: number,
  group: number,
  work: string,
  limit: { seconds: number } | { groups: number },
  transaction: (db: Client, wallet: Client, worker: number, index: number) => Promise<number>,
): Promise<GroupCeilingResult> {
  const connect = async (url: string) => {
    const c = new Client({ connectionString: url, application_name: 'bench-ceiling' });
    await c.connect();
    return c;
  };
  const workers = await Promise.all(
    Array.from({ length: clients }, async () => ({
      db: await connect(urls.url),
      wallet: await connect(urls.walletUrl),
    })),
  );
  let next = 0;
  let done = 0;
  let items = 0;
  let failed = 0;
  let latencyTotal = 0;
  const began = now();
  const deadline = 'seconds' in limit ? began + limit.seconds * 1000 : Infinity;
  try {
    await Promise.all(
      workers.map(async ({ db, wallet }, worker) => {
        for (;;) {
          const index = next++;
          if ('groups' in limit ? index >= limit.groups : now() >= deadline) break;
          const t = now();
          try {
            // Awaited first: `items += await …` would read `items` before the wait and lose other workers' counts.
            const n = await transaction(db, wallet, worker, index);
            items += n;
            done++;
            latencyTotal += now() - t;
          } catch (error) {
            failed++;
            if (failed > 10) throw error;
          }
        }
      }),
    );
  } finally {
    await Promise.all(
      workers.flatMap((w) => [w.db.end().catch(() => undefined), w.wallet.end().catch(() => undefined)]),
    );
  }
  const seconds = (now() - began) / 1000;
  return {
    name,
    tool: 'pg',
    clients,
    group,
    work,
    transactions: done,
    items,
    duration_s: round(seconds, 2),
    tps: round(done / seconds),
    items_per_s: round(items / seconds),
    avg_latency_ms: round(latencyTotal / Math.max(done, 1), 2),
    failed,
  };
}

/** One funded ceiling payer per worker (a batch request is one client's: one payer). */
async function ceilingPayers(walletUrl: string, clients: number): Promise<string[]> {
  const wallet = new Client({ connectionString: walletUrl, application_name: 'bench-ceiling' });
  await wallet.connect();
  try {
    const addresses = Array.from({ length: clients }, (_, k) => `${WALLET_PREFIX}payer${k}`);
    const { rows } = await wallet.query<{ account_id: string }>(
      `INSERT INTO wallet_daemon.accounts (kind, currency, address, balance)
       SELECT 'address', 'AITBC', address, 1000000000 FROM unnest($1::text[]) AS address
       ON CONFLICT (currency, address) DO UPDATE SET balance = 1000000000
       RETURNING account_id`,
      [addresses],
    );
    return rows.map((r) => r.account_id);
  } finally {
    await wallet.end();
  }
}

/**
 * Wallet side of `group` escrow creates by one payer, in the daemon's own shape (create-batch):
 * HD indexes, hold accounts, payer locked, transfers, balances (payer debited once by the
 * group's sum, compare-and-set against overdraft), two entries each (balanced at commit),
 * escrow rows, idempotency records with the answer.
 */
async function walletCreateGroup(
  wallet: Client,
  payerAccount: string,
  payer: string,
  escrows: { pid: string; eid: string }[],
): Promise<void> {
  const n = escrows.length;
  await inTx(wallet, async () => {
    await wallet.query(`SELECT nextval('wallet_daemon.hd_index_aitbc') FROM generate_series(1, $1::int)`, [n]);
    const holds = await wallet.query<{ account_id: string; address: string }>(
      `INSERT INTO wallet_daemon.accounts (kind, currency, address)
       SELECT 'escrow', 'AITBC', '${WALLET_PREFIX}' || md5(random()::text) FROM generate_series(1, $1::int)
       RETURNING account_id, address`,
      [n],
    );
    await wallet.query(`SELECT account_id FROM wallet_daemon.accounts WHERE account_id = $1 FOR UPDATE`, [
      payerAccount,
    ]);
    const hashes = escrows.map(() => hash());
    await wallet.query(
      `INSERT INTO wallet_daemon.transfers (transaction_hash, kind, currency, amount, escrow_id)
       SELECT h, 'create', 'AITBC', 0.001, e FROM unnest($1::char(64)[], $2::uuid[]) AS t(h, e)`,
      [hashes, escrows.map((e) => e.eid)],
    );
    const legs = [...holds.rows.map((h) => h.account_id), payerAccount];
    const moved = await wallet.query(
      `UPDATE wallet_daemon.accounts a SET balance = a.balance + d.delta
         FROM (SELECT account_id, sum(amount) AS delta FROM unnest($1::bigint[], $2::numeric[]) AS l(account_id, amount) GROUP BY account_id) d
        WHERE a.account_id = d.account_id AND (a.kind = 'mint' OR a.balance + d.delta >= 0)`,
      [legs, [...holds.rows.map(() => '0.001'), (-0.001 * n).toFixed(8)]],
    );
    if (moved.rowCount !== legs.length) throw new Error('ceiling payer ran out of funds');
    await wallet.query(
      `INSERT INTO wallet_daemon.entries (transaction_hash, account_id, amount)
       SELECT h, a, x FROM unnest($1::char(64)[], $2::bigint[], $3::numeric[]) AS e(h, a, x)`,
      [
        [...hashes, ...hashes],
        [...holds.rows.map((h) => h.account_id), ...holds.rows.map(() => payerAccount)],
        [...hashes.map(() => '0.001'), ...hashes.map(() => '-0.001')],
      ],
    );
    await wallet.query(
      `INSERT INTO wallet_daemon.escrows (escrow_id, payment_id, currency, address, amount, payer, timeout_seconds, expires_at, create_transaction_hash)
       SELECT e, p, 'AITBC', a, 0.001, $4, 3600, now() + interval '1 hour', h
         FROM unnest($1::uuid[], $2::text[], $3::text[], $5::char(64)[]) AS x(e, p, a, h)`,
      [escrows.map((e) => e.eid), escrows.map((e) => e.pid), holds.rows.map((h) => h.address), payer, hashes],
    );
    await wallet.query(
      `INSERT INTO wallet_daemon.idempotency_keys (idempotency_key, route, fingerprint, status_code, response_body)
       SELECT '${KEY_PREFIX}' || e, 'escrow/create', md5(e::text) || md5(h), 201,
              json_build_object('escrow_id', e, 'payment_id', p, 'address', a, 'amount', '0.00100000', 'currency', 'AITBC', 'state', 'held', 'transaction_hash', h)
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::char(64)[]) AS x(e, p, a, h)`,
      [escrows.map((e) => e.eid), escrows.map((e) => e.pid), holds.rows.map((h) => h.address), hashes],
    );
  });
}

/**
 * `group` paid jobs per group, both databases: the coordinator's transaction (jobs, escrowed
 * payments with their job-mirror trigger, escrow rows, two events each), then the wallet's
 * (above). Two commits per group where the coordinator makes three (pending, the daemon's,
 * escrowed), so this bounds the real path from above.
 */
export async function createGroupCeiling(
  urls: { url: string; walletUrl: string },
  clients: number,
  group: number,
  seconds: number,
): Promise<GroupCeilingResult> {
  const payers = await ceilingPayers(urls.walletUrl, clients);
  const work = "coordinator's statements + wallet daemon's statements, one transaction each per group";
  const r = await groupRun(
    `create ${group}/group ×${clients}`,
    urls,
    clients,
    group,
    work,
    { seconds },
    async (db, wallet, worker) => {
      const payments = await inTx(db, async () => {
        const jobs = await db.query<{ jid: string }>(
          `INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
         SELECT ${UUID7_SQL}, '${CEILING_CLIENT}', 'queued', ${PAYLOAD}, '{}', 3600, now(), now() + 3600 * interval '1 second', now()
           FROM generate_series(1, $1::int)
         RETURNING job_id AS jid`,
          [group],
        );
        const rows = (
          await db.query<{ pid: string; eid: string }>(
            `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                                     payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, escrowed_at, expires_at)
           SELECT ${UUID7_SQL}, jid, '${CEILING_CLIENT}', 0.001, 'AITBC', 'escrowed', ${UUID7_SQL}::text, ${ADDRESS},
                  ${ADDRESS}, ${ADDRESS}, 3600, now(), now(), now(), now() + 3600 * interval '1 second'
             FROM unnest($1::uuid[]) AS jid
           RETURNING payment_id AS pid, escrow_id AS eid`,
            [jobs.rows.map((r) => r.jid)],
          )
        ).rows;
        const pids = rows.map((r) => r.pid);
        await db.query(
          `INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, create_transaction_hash, created_at, updated_at)
         SELECT pid, eid, 0.001, 'AITBC', ${ADDRESS}, md5(random()::text) || md5(random()::text), now(), now()
           FROM unnest($1::uuid[], $2::varchar[]) AS i(pid, eid)`,
          [pids, rows.map((r) => r.eid)],
        );
        await db.query(
          `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
         SELECT pid, e.from_status, e.to_status, e.reason, e.actor
           FROM unnest($1::uuid[]) AS pid
          CROSS JOIN (VALUES (NULL, 'pending', 'payment_created', '${CEILING_CLIENT}'), ('pending', 'escrowed', 'escrow_created', 'system'))
                     AS e(from_status, to_status, reason, actor)`,
          [pids],
        );
        return rows;
      });
      await walletCreateGroup(wallet, payers[worker], `${WALLET_PREFIX}payer${worker}`, payments);
      return payments.length;
    },
  );
  progress(
    `  ceiling create, ${group} per group, both databases (pg, ${clients} clients): ${r.items_per_s} jobs/s (${r.tps} groups/s, avg ${r.avg_latency_ms} ms)`,
  );
  return r;
}

/**
 * `group` refunds per group over `count` escrowed payments held at the wallet too (inserted
 * in bulk for the purpose), both databases: the coordinator's transaction (lock the group's
 * payments in id order, compare-and-set each to settled with its job-mirror trigger, one
 * event each, escrow rows marked), then the wallet's (compare-and-set each escrow held →
 * refunded, accounts locked in id order, transfers, balances, two entries each,
 * idempotency records). A release is the same shape. Two commits per group where the
 * coordinator makes three (refunding, the daemon's, refunded).
 */
export async function settleGroupCeiling(
  db: Pool,
  urls: { url: string; walletUrl: string },
  clients: number,
  group: number,
  count: number,
): Promise<GroupCeilingResult> {
  const payerAccount = (await ceilingPayers(urls.walletUrl, 1))[0];
  const payer = `${WALLET_PREFIX}payer0`;
  await db.query(`DROP TABLE IF EXISTS bench_ceiling_groups`);
  await db.query(
    `CREATE UNLOGGED TABLE bench_ceiling_groups (g int NOT NULL, payment_id uuid NOT NULL, escrow_id uuid NOT NULL)`,
  );
  const client = await db.connect();
  let escrows: { pid: string; eid: string }[];
  try {
    await client.query('BEGIN');
    await client.query(
      `CREATE TEMP TABLE bench_ceiling_new ON COMMIT DROP AS
       SELECT i, gen_random_uuid() AS jid, gen_random_uuid() AS pid, gen_random_uuid() AS eid FROM generate_series(0, $1::int - 1) i`,
      [count],
    );
    await client.query(
      `INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
       SELECT jid, $1, 'queued', ${PAYLOAD}, '{}', 3600, now(), now() + interval '1 hour', now() FROM bench_ceiling_new`,
      [CEILING_CLIENT],
    );
    await client.query(
      `INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                                 payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, escrowed_at, expires_at)
       SELECT pid, jid, $1, 0.001, 'AITBC', 'escrowed', eid::text, ${ADDRESS}, ${ADDRESS}, ${ADDRESS}, 3600, now(), now(), now(), now() + interval '1 hour'
         FROM bench_ceiling_new`,
      [CEILING_CLIENT],
    );
    await client.query(
      `INSERT INTO payment_escrows (payment_id, escrow_id, amount, currency, address, created_at, updated_at)
       SELECT pid, eid::text, 0.001, 'AITBC', ${ADDRESS}, now(), now() FROM bench_ceiling_new`,
    );
    await client.query(`INSERT INTO bench_ceiling_groups SELECT i / $1::int, pid, eid FROM bench_ceiling_new`, [group]);
    escrows = (
      await client.query<{ pid: string; eid: string }>(`SELECT pid::text, eid::text FROM bench_ceiling_new ORDER BY i`)
    ).rows;
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
  // The same escrows held at the wallet, created in groups the daemon's way (not measured).
  const wallet = new Client({ connectionString: urls.walletUrl, application_name: 'bench-ceiling' });
  await wallet.connect();
  try {
    for (let i = 0; i < escrows.length; i += 1000)
      await walletCreateGroup(wallet, payerAccount, payer, escrows.slice(i, i + 1000));
  } finally {
    await wallet.end();
  }
  await db.query(`CREATE INDEX ON bench_ceiling_groups (g)`);
  await db.query(`VACUUM (ANALYZE) job, job_payments, payment_escrows, bench_ceiling_groups`);
  const groups = Math.ceil(count / group);
  const work = "coordinator's statements + wallet daemon's statements, one transaction each per group";
  const r = await groupRun(
    `settle ${group}/group ×${clients}`,
    urls,
    clients,
    group,
    work,
    { groups },
    async (c, w, _worker, index) => {
      const done = await inTx(c, async () => {
        const locked = await c.query<{ pid: string }>(
          `SELECT p.payment_id AS pid FROM job_payments p
          WHERE p.payment_id IN (SELECT payment_id FROM bench_ceiling_groups WHERE g = $1)
          ORDER BY p.payment_id FOR UPDATE`,
          [index],
        );
        const moved = await c.query<{ pid: string; eid: string }>(
          `UPDATE job_payments SET status = 'released', miner_id = '${CEILING_CLIENT}', payee_address = ${ADDRESS},
                transaction_hash = md5(random()::text) || md5(random()::text), settle_reason = 'job_completed', settled_by = '${CEILING_CLIENT}',
                released_at = now(), verified_at = now(), updated_at = now()
          WHERE payment_id = ANY($1::uuid[]) AND status = 'escrowed'
         RETURNING payment_id AS pid, escrow_id AS eid`,
          [locked.rows.map((r) => r.pid)],
        );
        const pids = moved.rows.map((r) => r.pid);
        await c.query(
          `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
         SELECT pid, 'escrowed', 'released', 'job_completed', '${CEILING_CLIENT}' FROM unnest($1::uuid[]) AS pid`,
          [pids],
        );
        await c.query(
          `UPDATE payment_escrows SET is_released = true, is_active = false, released_at = now(), updated_at = now()
          WHERE payment_id = ANY($1::uuid[]) AND is_active`,
          [pids],
        );
        return moved.rows;
      });
      await inTx(w, async () => {
        const hashes = done.map(() => hash());
        const claimed = await w.query<{ escrow_id: string; address: string }>(
          `UPDATE wallet_daemon.escrows e SET state = 'refunded', refund_address = $3, settle_transaction_hash = x.h, settle_reason = 'refund_requested', settled_at = now()
           FROM unnest($1::uuid[], $2::char(64)[]) AS x(id, h)
          WHERE e.escrow_id = x.id AND e.state = 'held'
         RETURNING e.escrow_id, e.address`,
          [done.map((r) => r.eid), hashes, payer],
        );
        const holds = await w.query<{ account_id: string; address: string }>(
          `SELECT account_id, address FROM wallet_daemon.accounts
          WHERE (currency = 'AITBC' AND address = ANY($1::text[])) OR account_id = $2 ORDER BY account_id FOR UPDATE`,
          [claimed.rows.map((r) => r.address), payerAccount],
        );
        const holdOf = new Map(holds.rows.map((h) => [h.address, h.account_id]));
        const hashOf = new Map(done.map((r, i) => [r.eid, hashes[i]]));
        const legs = claimed.rows.map((r) => ({
          hold: holdOf.get(r.address) as string,
          h: hashOf.get(r.escrow_id) as string,
          e: r.escrow_id,
        }));
        await w.query(
          `INSERT INTO wallet_daemon.transfers (transaction_hash, kind, currency, amount, escrow_id)
         SELECT h, 'refund', 'AITBC', 0.001, e FROM unnest($1::char(64)[], $2::uuid[]) AS t(h, e)`,
          [legs.map((l) => l.h), legs.map((l) => l.e)],
        );
        await w.query(
          `UPDATE wallet_daemon.accounts a SET balance = a.balance + d.delta
           FROM (SELECT account_id, sum(amount) AS delta FROM unnest($1::bigint[], $2::numeric[]) AS l(account_id, amount) GROUP BY account_id) d
          WHERE a.account_id = d.account_id AND (a.kind = 'mint' OR a.balance + d.delta >= 0)`,
          [
            [...legs.map((l) => l.hold), payerAccount],
            [...legs.map(() => '-0.001'), (0.001 * legs.length).toFixed(8)],
          ],
        );
        await w.query(
          `INSERT INTO wallet_daemon.entries (transaction_hash, account_id, amount)
         SELECT h, a, x FROM unnest($1::char(64)[], $2::bigint[], $3::numeric[]) AS e(h, a, x)`,
          [
            [...legs.map((l) => l.h), ...legs.map((l) => l.h)],
            [...legs.map((l) => l.hold), ...legs.map(() => payerAccount)],
            [...legs.map(() => '-0.001'), ...legs.map(() => '0.001')],
          ],
        );
        await w.query(
          `INSERT INTO wallet_daemon.idempotency_keys (idempotency_key, route, fingerprint, status_code, response_body)
         SELECT '${KEY_PREFIX}refund-' || e, 'escrow/refund', md5(e::text) || md5(h), 200,
                json_build_object('escrow_id', e, 'state', 'refunded', 'refund_address', $3::text, 'transaction_hash', h)
           FROM unnest($1::uuid[], $2::char(64)[]) AS x(e, h)`,
          [legs.map((l) => l.e), legs.map((l) => l.h), payer],
        );
      });
      return done.length;
    },
  );
  await db.query(`DROP TABLE IF EXISTS bench_ceiling_groups`);
  progress(
    `  ceiling settle, ${group} per group, both databases (pg, ${clients} clients): ${r.items_per_s} settlements/s (${r.tps} groups/s, avg ${r.avg_latency_ms} ms)`,
  );
  return r;
}
