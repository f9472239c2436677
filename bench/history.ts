import { readFileSync } from 'node:fs';
import type { Pool } from 'pg';
import { ROLLUP_FOLD_LOCK_SQL, ROLLUP_FOLD_SQL, ROLLUP_PRUNE_SQL } from '../src/history/payment-history.repository';
import { runLoad, Step } from './load';
import type { Coordinator } from './processes';
import { now, percentile, progress, round, sleep } from './util';

/**
 * The `history` phase (README "Payment history and reporting"): payments seeded by SQL
 * over 2 currencies, 1,000 clients and 100 miners, spread over the last 30 days, with the
 * rollup triggers on (they are the write path being paid for); then the issue's goals:
 * list p99 with one filter at 10k and at 1M payments, summary p99, export rows/s and the
 * coordinator's RSS growth, and a consumer following the event feed under a write load.
 *
 * The two list sizes are two databases on the same server, each with its own coordinator
 * (the small one holds the first rows of the large one), measured in alternating blocks:
 * a p99 of single requests of about a millisecond on two shared cores moves by more than
 * ±20 % between one minute and the next, so sizes measured one after the other compared
 * the minutes more than the sizes.
 */
export interface HistoryOptions {
  db: Pool;
  base: string;
  adminKey: string;
  coordinator: Coordinator;
  /** A second coordinator on its own database, where only the small size is seeded. */
  small: { db: Pool; base: string };
  createStep: () => Step;
  connections: number;
  /** Seeded payments: the small and the large size (default 10,000 and 1,000,000). */
  sizes: [number, number];
  /** Samples per list filter and size, and per summary. */
  samples: number;
  /** Alternating blocks the list samples are taken in, per filter and size. */
  listRounds: number;
  loadSeconds: number;
}

interface Goal {
  goal: string;
  value: string;
  met: boolean;
}

const CHUNK = 100_000;
const DAY_MS = 86_400_000;

/** Row i of the seed, as SQL over `i`: a deterministic mix of currencies, clients, miners, statuses, amounts and days. */
const SERIES = `
  SELECT i,
         $3::timestamptz - ((i * 7919) % ${30 * DAY_MS}) * interval '1 millisecond' AS ts,
         CASE WHEN i % 2 = 0 THEN 'BTC' ELSE 'AITBC' END AS currency,
         -- One payment in fifty is hc-0's, a large client (a marketplace has a few); the other
         -- 999 clients share the rest. The client filter lists hc-0, whose page of 20 is full at
         -- both sizes: a client of 10 payments at 10,000 would compare a 10-row page with a 20-row one.
         CASE WHEN i % 50 = 0 THEN 'hc-0' ELSE 'hc-' || (1 + i % 999) END AS client_id,
         'hm-' || (i % 100) AS miner_id,
         CASE WHEN i % 20 < 16 THEN 'released' WHEN i % 20 < 18 THEN 'refunded' WHEN i % 20 = 18 THEN 'escrowed' ELSE 'failed' END AS status,
         (((i * 2654435761) % 100000000) + 1)::numeric / 100000000 AS amount
    FROM generate_series($1::bigint, $2::bigint) AS i`;

const JOBS_SQL = `
  INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at,
                   assigned_miner_id, finished_at, payment_id, payment_status, payment_amount, payment_currency, updated_at)
  SELECT md5('hj' || i)::uuid, client_id,
         CASE status WHEN 'released' THEN 'completed' WHEN 'refunded' THEN 'canceled' WHEN 'escrowed' THEN 'running' ELSE 'failed' END,
         '{"job_type": "ai_inference"}'::jsonb, '{}'::jsonb, 900, ts, ts + interval '900 seconds',
         CASE WHEN status IN ('released', 'escrowed') THEN miner_id END,
         CASE WHEN status <> 'escrowed' THEN ts + interval '2 seconds' END,
         md5('hp' || i)::uuid, status, amount, currency, ts + interval '2 seconds'
    FROM (${SERIES}) s`;

const PAYMENTS_SQL = `
  INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, escrow_id, escrow_address,
                            payer_address, refund_address, miner_id, payee_address, transaction_hash, refund_transaction_hash,
                            escrow_timeout_seconds, settle_reason, failure_reason, created_at, updated_at, escrowed_at,
                            released_at, refunded_at, expires_at)
  SELECT md5('hp' || i)::uuid, md5('hj' || i)::uuid, client_id, amount, currency, status,
         CASE WHEN status <> 'failed' THEN 'he-' || i END, CASE WHEN status <> 'failed' THEN 'escrow-address' END,
         'payer-address', 'refund-address',
         CASE WHEN status IN ('released', 'escrowed') THEN miner_id END,
         CASE WHEN status IN ('released', 'escrowed') THEN 'payee-address' END,
         CASE WHEN status = 'released' THEN md5('t' || i) END,
         CASE WHEN status = 'refunded' THEN md5('t' || i) END,
         3600,
         CASE status WHEN 'released' THEN 'job_completed' WHEN 'refunded' THEN 'job_canceled' END,
         CASE WHEN status = 'failed' THEN 'escrow_not_confirmed_before_deadline' END,
         ts, ts + interval '2 seconds',
         CASE WHEN status <> 'failed' THEN ts + interval '50 milliseconds' END,
         CASE WHEN status = 'released' THEN ts + interval '2 seconds' END,
         CASE WHEN status = 'refunded' THEN ts + interval '2 seconds' END,
         ts + interval '3600 seconds'
    FROM (${SERIES}) s`;

/** Seeds rows [from, to) with the mirror trigger off (job rows are written consistent) and the rollup triggers on. */
async function seed(db: Pool, from: number, to: number, anchor: string): Promise<number> {
  const began = now();
  const client = await db.connect();
  try {
    for (let lo = from; lo < to; lo += CHUNK) {
      const hi = Math.min(to, lo + CHUNK);
      await client.query('BEGIN');
      await client.query('ALTER TABLE job_payments DISABLE TRIGGER job_payments_mirror_inserted');
      await client.query(JOBS_SQL, [lo, hi - 1, anchor]);
      await client.query(PAYMENTS_SQL, [lo, hi - 1, anchor]);
      await client.query('ALTER TABLE job_payments ENABLE TRIGGER job_payments_mirror_inserted');
      await client.query('COMMIT');
      if (to - from > CHUNK) progress(`  seeded ${hi.toLocaleString('en-US')} of ${to.toLocaleString('en-US')}`);
    }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
  return (now() - began) / 1000;
}

/** Folds the rollup's deltas as the coordinator's folder does (the bench coordinator runs without background workers). */
async function fold(db: Pool): Promise<{ deltas: number; seconds: number }> {
  const began = now();
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query(ROLLUP_FOLD_LOCK_SQL);
    const { rows } = await client.query<{ deltas: string }>(ROLLUP_FOLD_SQL);
    await client.query(ROLLUP_PRUNE_SQL);
    await client.query('COMMIT');
    return { deltas: Number(rows[0].deltas), seconds: (now() - began) / 1000 };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Microseconds per payment inserted, with the rollup triggers on and off (rolled back; nothing stays). */
async function triggerCost(db: Pool, anchor: string): Promise<{ with_us: number; without_us: number }> {
  const rows = 50_000;
  const from = 50_000_000;
  const run = async (withTriggers: boolean) => {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query('ALTER TABLE job_payments DISABLE TRIGGER job_payments_mirror_inserted');
      if (!withTriggers) await client.query('ALTER TABLE job_payments DISABLE TRIGGER job_payments_rollup_insert');
      await client.query(JOBS_SQL, [from, from + rows - 1, anchor]);
      const began = now();
      await client.query(PAYMENTS_SQL, [from, from + rows - 1, anchor]);
      return ((now() - began) * 1000) / rows;
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
  };
  await run(true); // warm-up
  return { with_us: round(await run(true), 2), without_us: round(await run(false), 2) };
}

async function checkpoint(db: Pool): Promise<void> {
  await db.query('CHECKPOINT').catch(() => undefined);
}

/** Milliseconds of each of `samples` sequential GETs after `warmUp` unmeasured ones; every answer must be 200. */
async function timeGets(base: string, key: string, path: string, samples: number, warmUp = 10): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples + warmUp; i++) {
    const began = now();
    const response = await fetch(`${base}${path}`, { headers: { 'x-api-key': key } });
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`GET ${path} → ${response.status}`);
    if (i >= warmUp) times.push(now() - began);
  }
  return times;
}

const percentiles = (times: number[]) => ({
  p50: round(percentile(times, 50), 2),
  p99: round(percentile(times, 99), 2),
  samples: times.length,
});

/** p99 (and p50) of `samples` sequential GETs after a short warm-up. */
async function latency(base: string, key: string, path: string, samples: number) {
  return percentiles(await timeGets(base, key, path, samples));
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

const midnight = (ms: number) => new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);

export async function measureHistory(o: HistoryOptions): Promise<{ goals: Goal[]; figures: Record<string, unknown> }> {
  const { db, base, adminKey } = o;
  const [small, large] = o.sizes;
  const anchor = new Date().toISOString();
  const t = Date.now();
  // Other phases seed by SQL with every trigger off (session_replication_role): rebuild the rollup from the rows first.
  await db.query(`TRUNCATE payment_rollup, payment_rollup_delta`);
  await db.query(`
    INSERT INTO payment_rollup (scope, scope_id, day, currency, status, count, amount)
    SELECT s.scope, s.id, (p.created_at AT TIME ZONE 'UTC')::date, p.currency, p.status, count(*), sum(p.amount)
      FROM job_payments p
      CROSS JOIN LATERAL (VALUES ('a', ''), ('c', p.client_id), ('m', COALESCE(p.miner_id, ''))) AS s(scope, id)
     GROUP BY 1, 2, 3, 4, 5`);

  const filters: Record<string, string> = {
    none: '',
    status: 'status=escrowed',
    currency: 'currency=AITBC',
    client_id: 'client_id=hc-0',
    miner_id: 'miner_id=hm-3',
    created: `created_from=${new Date(t - 7 * DAY_MS).toISOString()}`,
    settled: `settled_from=${new Date(t - 7 * DAY_MS).toISOString()}`,
    amount: 'amount_min=0.99',
    job_id: `job_id=${'00000000-0000-0000-0000-000000000000'}`,
  };
  // Both sizes, filter by filter, in alternating blocks (which size goes first alternates too),
  // so that whatever else the machine does in a given minute falls on both sizes alike.
  const listBoth = async () => {
    // job_id: a seeded job (row 7), so the filter finds one payment at either size.
    const [{ job_id }] = (await db.query<{ job_id: string }>(`SELECT md5('hj' || 7)::uuid::text AS job_id`)).rows;
    filters.job_id = `job_id=${job_id}`;
    const path = (query: string) => `/v1/payments?limit=20${query ? `&${query}` : ''}`;
    const sizes = [o.small.base, base];
    // Every filter's path warmed up first on both (JIT, plans, caches), so the first one measured is not the cold one.
    for (const at of sizes) for (const query of Object.values(filters)) await timeGets(at, adminKey, path(query), 40);
    const times = sizes.map(() => new Map(Object.keys(filters).map((name) => [name, [] as number[]])));
    const block = Math.ceil(o.samples / o.listRounds);
    for (let r = 0; r < o.listRounds; r++) {
      progress(`  list: round ${r + 1} of ${o.listRounds} (${block} GETs per filter and size)`);
      for (const [name, query] of Object.entries(filters)) {
        for (const s of r % 2 === 0 ? [0, 1] : [1, 0])
          times[s].get(name)!.push(...(await timeGets(sizes[s], adminKey, path(query), block, 2)));
      }
    }
    const [atSmall, atLarge] = times.map(
      (byName) =>
        Object.fromEntries([...byName].map(([name, t]) => [name, percentiles(t)])) as Record<
          string,
          ReturnType<typeof percentiles>
        >,
    );
    for (const [size, out] of [
      [small, atSmall],
      [large, atLarge],
    ] as const)
      progress(
        `  list p99 at ${size.toLocaleString('en-US')}: ${Object.entries(out)
          .map(([k, v]) => `${k} ${v.p99} ms`)
          .join(', ')}`,
      );
    return { listSmall: atSmall, listLarge: atLarge };
  };

  progress(
    `history: seeding ${small.toLocaleString('en-US')} payments by SQL (2 currencies, 1,000 clients, 100 miners, 30 days), in each database`,
  );
  const seedSmall = await seed(db, 0, small, anchor);
  await seed(o.small.db, 0, small, anchor);
  await fold(o.small.db);
  await o.small.db.query(`VACUUM (ANALYZE) job, job_payments, payment_rollup, payment_rollup_delta`);

  progress(`history: seeding up to ${large.toLocaleString('en-US')} payments (rollup triggers on)`);
  const seedLarge = await seed(db, small, large, anchor);
  const rate = round((large - small) / seedLarge, 0);
  progress(
    `  seeded ${(large - small).toLocaleString('en-US')} in ${round(seedLarge)} s (${rate} rows/s, triggers included)`,
  );
  const folded = await fold(db);
  progress(`  folded ${folded.deltas.toLocaleString('en-US')} rollup deltas in ${round(folded.seconds, 2)} s`);
  const summaryPath = `/v1/payments/summary?group_by=currency,status,day&created_from=${midnight(t - 30 * DAY_MS)}&created_to=${midnight(t + DAY_MS)}`;
  // The fold just deleted every delta: until a vacuum, a summary's scan of payment_rollup_delta walks them all
  // (the table's autovacuum thresholds, migration 1764400000000, make that a minute at most). Recorded, then vacuumed
  // as autovacuum would, like the tables above.
  const summaryDeadDeltas = await latency(base, adminKey, summaryPath, 5);
  await db.query(`VACUUM (ANALYZE) job, job_payments, payment_rollup, payment_rollup_delta`);
  // The seeding's dirty pages written out now, not by a checkpoint in the middle of the latency samples
  // (CHECKPOINT needs a superuser or pg_checkpoint; without either, measured as it is).
  await checkpoint(db);
  const { listSmall, listLarge } = await listBoth();

  const summary = await latency(base, adminKey, summaryPath, o.samples);
  const summaryClient = await latency(base, adminKey, `${summaryPath}&client_id=hc-7`, o.samples);
  // A filter the rollup has no dimension for: summed from the payments (for the record, not a goal).
  const summaryScan = await latency(base, adminKey, '/v1/payments/summary?group_by=status&amount_min=0.5', 3);
  progress(
    `  summary p99: ${summary.p99} ms (all), ${summaryClient.p99} ms (one client), p50 ${summary.p50} ms; amount_min (from the payments): p50 ${summaryScan.p50} ms; right after the fold, before the deltas' vacuum: p50 ${summaryDeadDeltas.p50} ms`,
  );

  // Export every payment, twice. The goal is judged on the first: RSS growth is its peak over
  // the RSS before it, on a coordinator that has not exported yet. The second shows what an
  // export adds once the process has reached the high-water mark a fast stream leaves (V8's
  // young generation, and the buffers awaiting its next collection, kept by the allocator).
  const first = await exportAll(o);
  const second = await exportAll(o);
  const exportRate = first.rows_per_s;
  const rssGrowth = first.rss_growth_mb;
  for (const [name, e] of [
    ['export', first],
    ['export again', second],
  ] as const) {
    progress(
      `  ${name}: ${e.rows.toLocaleString('en-US')} rows, ${round(e.bytes / 2 ** 20)} MiB in ${e.seconds} s = ${e.rows_per_s} rows/s; ` +
        `RSS ${e.rss_before_mb} → peak ${e.rss_peak_mb} MiB (+${e.rss_growth_mb})`,
    );
  }

  // The feed under a write load: a consumer follows from the current end while 64 connections create paid jobs.
  const feed = await followFeed(o);
  const cost = await triggerCost(db, anchor);
  progress(`  rollup trigger cost per payment insert: ${cost.with_us} µs with, ${cost.without_us} µs without`);

  const goals: Goal[] = [];
  for (const name of Object.keys(filters)) {
    const r = listLarge[name].p99 / listSmall[name].p99;
    goals.push({
      goal: `list (${name}) p99 within ±20 % from ${small} to ${large}`,
      value: `${listSmall[name].p99} → ${listLarge[name].p99} ms (×${round(r, 2)})`,
      met: r >= 0.8 && r <= 1.2,
    });
  }
  goals.push({
    goal: 'summary currency,status,day over 30 days p99 ≤ 50 ms',
    value: `${summary.p99} ms`,
    met: summary.p99 <= 50,
  });
  goals.push({ goal: 'export ≥ 100,000 rows/s', value: `${exportRate} rows/s`, met: exportRate >= 100_000 });
  goals.push({ goal: 'export RSS growth ≤ 50 MiB', value: `${rssGrowth} MiB`, met: rssGrowth <= 50 });
  goals.push({
    goal: `feed under a ${o.connections}-connection write load misses nothing`,
    value: `${feed.seen} seen of ${feed.expected}, ${feed.missing} missing, ${feed.repeated} repeated`,
    met: feed.missing === 0 && feed.repeated === 0,
  });
  goals.push({
    goal: 'feed lag ≤ 1 s',
    value: `p99 ${feed.lag_p99_ms} ms, max ${feed.lag_max_ms} ms`,
    met: feed.lag_max_ms <= 1000,
  });
  for (const g of goals) progress(`  ${g.met ? 'MET    ' : 'NOT MET'} ${g.goal}: ${g.value}`);
  return {
    goals,
    figures: {
      sizes: o.sizes,
      seed_seconds: { small: round(seedSmall), large: round(seedLarge), rows_per_s: rate },
      fold: folded,
      list_small: listSmall,
      list_large: listLarge,
      summary,
      summary_client: summaryClient,
      summary_before_delta_vacuum: summaryDeadDeltas,
      summary_scan: summaryScan,
      export: first,
      export_again: second,
      feed,
      trigger_cost_us: cost,
    },
  };
}

/**
 * One CSV export of every payment, read as fast as the coordinator sends it, with the
 * coordinator's RSS sampled during it.
 */
async function exportAll(o: HistoryOptions) {
  const rssBefore = rssMb(o.coordinator.pid);
  o.coordinator.rss.takePhasePeakMb();
  const began = now();
  const response = await fetch(`${o.base}/v1/payments/export?format=csv`, { headers: { 'x-api-key': o.adminKey } });
  if (response.status !== 200 || !response.body) throw new Error(`export → ${response.status}`);
  let lines = 0;
  let bytes = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    // Buffer.indexOf, not a JS loop over every byte: the reader shares the CPUs with the coordinator it measures.
    const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) lines++;
  }
  const seconds = (now() - began) / 1000;
  const rssPeak = o.coordinator.rss.takePhasePeakMb();
  const rows = lines - 1; // header; amounts carry no line breaks, reasons here have none
  return {
    rows,
    bytes,
    seconds: round(seconds, 2),
    rows_per_s: round(rows / seconds, 0),
    rss_before_mb: round(rssBefore),
    rss_peak_mb: rssPeak,
    rss_growth_mb: round(Math.max(0, rssPeak - rssBefore), 1),
  };
}

/**
 * A consumer polls GET /v1/events from the current end while the write load runs, then
 * until it has caught up. Every event written meanwhile must arrive exactly once; lag is
 * when the consumer first saw an event minus the event's created_at (its transaction's start).
 */
async function followFeed(o: HistoryOptions) {
  const { db, base, adminKey } = o;
  const [{ max }] = (
    await db.query<{ max: string }>(`SELECT COALESCE(max(event_id), 0)::text AS max FROM payment_events`)
  ).rows;
  let cursor: string | null = null;
  // Find the end of the feed (everything up to now) without timing it.
  for (;;) {
    const page = await getFeed(base, adminKey, cursor);
    cursor = page.next_cursor;
    if (page.items.length < 500) break;
  }
  const seen = new Map<string, number>();
  let repeated = 0;
  const lags: number[] = [];
  let loading = true;
  const consumer = (async () => {
    let idle = 0;
    while (loading || idle < 20) {
      const page = await getFeed(base, adminKey, cursor);
      cursor = page.next_cursor;
      const at = Date.now();
      for (const e of page.items) {
        if (seen.has(e.event_id)) repeated++;
        seen.set(e.event_id, at);
        lags.push(at - Date.parse(e.created_at));
      }
      idle = page.items.length === 0 ? idle + 1 : 0;
      if (page.items.length === 0) await sleep(50);
    }
  })();
  progress(
    `  feed: following GET /v1/events while ${o.connections} connections create paid jobs for ${o.loadSeconds} s`,
  );
  await runLoad('create (feed load)', {
    url: base,
    connections: o.connections,
    duration: o.loadSeconds,
    steps: [o.createStep()],
    expect: { create: [201] },
  });
  loading = false;
  await consumer;
  const written = (
    await db.query<{ event_id: string }>(`SELECT event_id::text FROM payment_events WHERE event_id > $1`, [max])
  ).rows;
  const missing = written.filter((e) => !seen.has(e.event_id)).length;
  const result = {
    expected: written.length,
    seen: seen.size,
    missing,
    repeated,
    lag_p50_ms: round(percentile(lags, 50), 0),
    lag_p99_ms: round(percentile(lags, 99), 0),
    lag_max_ms: round(
      lags.reduce((a, b) => Math.max(a, b), 0),
      0,
    ),
  };
  progress(
    `  feed: ${result.seen} events seen of ${result.expected} written, ${missing} missing, ${repeated} repeated; lag p50 ${result.lag_p50_ms} ms, p99 ${result.lag_p99_ms} ms, max ${result.lag_max_ms} ms`,
  );
  return result;
}

async function getFeed(
  base: string,
  key: string,
  cursor: string | null,
): Promise<{ items: { event_id: string; created_at: string }[]; next_cursor: string | null }> {
  const response = await fetch(`${base}/v1/events?limit=500${cursor ? `&after=${cursor}` : ''}`, {
    headers: { 'x-api-key': key },
  });
  if (response.status !== 200) throw new Error(`GET /v1/events → ${response.status} ${await response.text()}`);
  return (await response.json()) as { items: { event_id: string; created_at: string }[]; next_cursor: string | null };
}
