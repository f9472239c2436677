import type { StatementStat } from './statements';
import type { CeilingResult, GroupCeilingResult, ReadKind } from './ceiling';
import type { LoadResult } from './load';
import type { ProfileSummary } from './profile';

export interface Report {
  run_id: string;
  started_at: string;
  quick: boolean;
  total_seconds?: number;
  machine: {
    cpus: number;
    cpu_model: string;
    memory_gib: number;
    kernel: string;
    node: string;
    postgres: string;
    postgres_settings: Record<string, string>;
    load_at_start?: { loadavg: string; busy_pct: number };
  };
  options: Record<string, unknown>;
  reads: ({ size: number; ceilings: Partial<Record<ReadKind, CeilingResult>> } & Record<ReadKind, LoadResult>)[];
  ceilings: {
    create: CeilingResult[];
    release: CeilingResult[];
    reads: CeilingResult[];
    sweep_decisions?: { decisions: number; seconds: number; per_s: number };
    create_group?: GroupCeilingResult;
    settle_group?: GroupCeilingResult;
  };
  goals?: Goal[];
  writes: Record<string, any>;
  rss_mb: Record<string, number>;
  consistency?: Record<string, unknown>;
  statements?: StatementStat[];
  profiles?: Record<string, ProfileSummary | undefined>;
}

type Row = [string, string, string, string, string, string];

const OTHER = 'other (pg background, rest of machine)';
/** Figures taken while other work used more than half a core get a mark. */
const noisy = (x: { cpu?: Record<string, number> } | undefined) => ((x?.cpu?.[OTHER] ?? 0) > 50 ? ' *' : '');
let anyNoisy = false;
const mark = (x: { cpu?: Record<string, number> } | undefined) => {
  const m = noisy(x);
  if (m) anyNoisy = true;
  return m;
};

const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n)
    ? '–'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratioText = (r: number | undefined) => (r === undefined ? '–' : `${r.toFixed(2)}×`);
const sizeText = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n));

/** The results as a Markdown table (also printed to the terminal). */
export function renderReport(r: Report): string {
  anyNoisy = false;
  const rows: Row[] = [];
  const w = r.writes;
  const createCeil = best(r.ceilings.create);
  const releaseCeil = best(r.ceilings.release);
  const connections = String(r.options.connections);

  if (w.create) {
    rows.push([
      `paid-job creation, POST /v1/jobs (${connections} conn, ${w.create.duration_s}s)${mark(w.create)}`,
      `${fmt(w.create.req_per_s)} req/s, ${w.create.non2xx ? `${fmt(w.create.non2xx)} non-2xx` : 'all 201'}`,
      fmt(w.create.p50_ms, 1),
      fmt(w.create.p99_ms, 1),
      ceilText(createCeil),
      ratioText(w.create.ratio),
    ]);
  }
  if (w.create_sustained) {
    rows.push([
      `paid-job creation, ${fmt(w.create_sustained.requests)} jobs for the sweep${mark(w.create_sustained)}`,
      `${fmt(w.create_sustained.req_per_s)} req/s, ${w.create_sustained.non2xx ? `${fmt(w.create_sustained.non2xx)} non-2xx` : 'all 201'}`,
      fmt(w.create_sustained.p50_ms, 1),
      fmt(w.create_sustained.p99_ms, 1),
      ceilText(createCeil),
      ratioText(w.create_sustained.ratio),
    ]);
  }
  if (w.miner) {
    const res = w.miner.steps.result ?? {};
    const poll = w.miner.steps.poll ?? {};
    rows.push([
      `miner poll → result, each result releases (${connections} conn, ${w.miner.duration_s}s)${mark(w.miner)}`,
      `${fmt(w.miner.settlements_per_s)} settlements/s${w.miner.non2xx ? `, ${fmt(w.miner.non2xx)} non-2xx` : ''}`,
      `${res.count ? fmt(res.p50_ms, 1) : '–'} (poll ${fmt(poll.p50_ms, 1)})`,
      `${res.count ? fmt(res.p99_ms, 1) : '–'} (poll ${fmt(poll.p99_ms, 1)})`,
      ceilText(releaseCeil),
      ratioText(w.miner.ratio),
    ]);
  }
  if (w.create_batch) {
    const x = w.create_batch;
    const c = r.ceilings.create_group;
    rows.push([
      `paid-job creation, POST /v1/jobs/batch (${x.group} per request, ${fmt(x.requests)} requests, ${x.connections} conn)${mark(x)}`,
      `${fmt(x.jobs_per_s)} jobs/s${x.non2xx ? `, ${fmt(x.non2xx)} non-2xx` : ''}${otherItems(x.items_by_status, '201')}`,
      fmt(x.p50_ms, 1),
      fmt(x.p99_ms, 1),
      c ? `${fmt(c.items_per_s)} jobs/s (${c.group}/group, both DBs, ${c.clients} clients)` : '–',
      ratioText(x.ratio),
    ]);
  }
  if (w.settle_batch) {
    const x = w.settle_batch;
    const c = r.ceilings.settle_group;
    rows.push([
      `POST /v1/payments/batch refund, ${fmt(x.payments)} payments (${x.group} per request, ${x.connections} conn)${mark(x)}`,
      `${fmt(x.settlements_per_s)} settlements/s${x.non2xx ? `, ${fmt(x.non2xx)} non-2xx` : ''}${otherItems(x.items_by_status, '200')}`,
      fmt(x.p50_ms, 1),
      fmt(x.p99_ms, 1),
      c ? `${fmt(c.items_per_s)}/s (${c.group}/group, both DBs, ${c.clients} clients)` : '–',
      ratioText(x.ratio),
    ]);
  }
  for (const p of w.create_curve?.points ?? []) {
    rows.push([
      `connections sweep: POST /v1/jobs (paid) at ${p.connections} conn, ${fmt(p.seconds, 1)}s${mark(p)}`,
      `${fmt(p.req_per_s)} req/s${p.non2xx ? `, ${fmt(p.non2xx)} non-2xx` : ''}`,
      fmt(p.p50_ms, 1),
      fmt(p.p99_ms, 1),
      ceilText(createCeil),
      ratioText(createCeil ? Math.round((p.req_per_s / createCeil.tps) * 100) / 100 : undefined),
    ]);
  }
  for (const kind of ['release', 'refund'] as const) {
    const x = w[kind];
    if (!x) continue;
    rows.push([
      `POST /v1/payments/{id}/${kind} (${fmt(x.requests)} calls)${mark(x)}`,
      `${fmt(x.settlements_per_s)} settlements/s${x.non2xx ? `, ${fmt(x.non2xx)} non-2xx` : ''}`,
      fmt(x.p50_ms, 1),
      fmt(x.p99_ms, 1),
      ceilText(releaseCeil),
      ratioText(x.ratio),
    ]);
  }
  if (w.sweep) {
    const s = w.sweep;
    rows.push([
      `expiry sweep: ${fmt(s.escrows)} due escrows refunded at the daemon${mark(s)}`,
      s.complete
        ? `${fmt(s.refunds_per_s)} refunds/s (${fmt(s.seconds, 1)} s)`
        : `incomplete: ${fmt(s.refunded)} in time`,
      '',
      '',
      ceilText(releaseCeil),
      ratioText(s.ratio),
    ]);
    rows.push([
      `expiry sweep: decisions (expireDue, ${s.batches?.count ?? '?'} batches)`,
      `≥ ${fmt(s.batches?.decision_rate_per_s)} decisions/s`,
      '',
      '',
      r.ceilings.sweep_decisions ? `${fmt(r.ceilings.sweep_decisions.per_s)}/s (same SQL)` : '–',
      ratioText(s.decision_ratio),
    ]);
  }
  for (const entry of r.reads) {
    const labels: Record<ReadKind, string> = {
      get_payment: 'GET /v1/payments/{id}',
      list_first: 'GET /v1/jobs?limit=20 (first page)',
      list_deep: 'GET /v1/jobs?limit=20&cursor= (random page)',
    };
    for (const kind of ['get_payment', 'list_first', 'list_deep'] as ReadKind[]) {
      const x = entry[kind];
      const c = entry.ceilings[kind];
      rows.push([
        `${labels[kind]} @ ${sizeText(entry.size)} payments (${x.connections} conn)${mark(x)}`,
        `${fmt(x.req_per_s)} req/s${x.non2xx ? `, ${fmt(x.non2xx)} non-2xx` : ''}`,
        fmt(x.p50_ms, 1),
        fmt(x.p99_ms, 1),
        c ? `${fmt(c.tps)} q/s` : '–',
        ratioText(c ? Math.round((x.req_per_s / c.tps) * 100) / 100 : undefined),
      ]);
    }
  }
  const rss = r.rss_mb;
  rows.push([
    'peak RSS of the coordinator (VmHWM)',
    `${fmt(rss.main_peak_vmhwm)} MiB`,
    '',
    '',
    rss.sweeper_peak_vmhwm ? `sweeper instance ${fmt(rss.sweeper_peak_vmhwm)} MiB` : '',
    '',
  ]);

  const header: Row = ['figure', 'throughput', 'p50 ms', 'p99 ms', 'ceiling (same SQL, direct)', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (row: Row) => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  const m = r.machine;
  const tool = r.ceilings.create[0]?.tool ?? 'pg';
  const notes = [
    `Run ${r.run_id}${r.quick ? ' (--quick)' : ''}: ${m.cpus} × ${m.cpu_model}, ${m.memory_gib} GiB, Node ${m.node}, PostgreSQL ${m.postgres}` +
      ` (fsync ${m.postgres_settings.fsync}, synchronous_commit ${m.postgres_settings.synchronous_commit}); coordinator, wallet daemon, PostgreSQL and load generator share the machine.`,
  ];
  if (m.load_at_start && m.load_at_start.busy_pct > 30) {
    notes.push(
      `WARNING: the machine was already ${m.load_at_start.busy_pct}% busy (load average ${m.load_at_start.loadavg}) before the benchmark started; see "cpu" per phase in the JSON.`,
    );
  }
  if (anyNoisy)
    notes.push(
      '* other work on the machine (not the coordinator, daemon, load generator or PostgreSQL backends) used more than half a core during that measurement.',
    );
  if (r.ceilings.create.length) {
    notes.push(
      `Ceilings (${tool}): create ${r.ceilings.create.map((c) => `${fmt(c.tps)} tx/s at ${c.clients}`).join(', ')} clients; ` +
        `release ${r.ceilings.release.map((c) => `${fmt(c.tps)} tx/s at ${c.clients}`).join(', ')} clients; ratios use the best. ` +
        (r.ceilings.reads.length
          ? `Read ceilings: the endpoint's query alone at ${r.ceilings.reads[0].clients} clients.`
          : ''),
    );
    notes.push(
      "Per-item ceilings (create, release) run the coordinator database's statements only; the batch ceilings run both databases' statements " +
        "(the coordinator's transaction, then the wallet daemon's), one transaction each per group — two commits where the service makes three.",
    );
  }
  return [
    ...notes,
    '',
    line(header),
    `|${widths.map((n) => '-'.repeat(n + 2)).join('|')}|`,
    ...rows.map(line),
    '',
    ...costTable(r),
    '',
    ...goals(r),
  ].join('\n');
}

function best(list: CeilingResult[]): CeilingResult | undefined {
  return list.reduce<CeilingResult | undefined>((b, c) => (!b || c.tps > b.tps ? c : b), undefined);
}

function ceilText(c: CeilingResult | undefined): string {
  return c ? `${fmt(c.tps)} tx/s (${c.clients} clients)` : '–';
}

/** Work per operation: load-independent, so it explains the throughput figures above. */
function costTable(r: Report): string[] {
  const w = r.writes;
  const entries: [string, any][] = [
    ['paid job created (POST /v1/jobs)', w.create?.db],
    ['job completed by a miner (poll + result + release)', w.miner?.db],
    ['explicit release', w.release?.db],
    ['explicit refund', w.refund?.db],
    ['escrow refunded by the expiry sweep', w.sweep?.db],
    [`paid job created in POST /v1/jobs/batch (${w.create_batch?.group ?? '?'} per request)`, w.create_batch?.db],
    [`payment refunded in POST /v1/payments/batch (${w.settle_batch?.group ?? '?'} per request)`, w.settle_batch?.db],
  ];
  const present = entries.filter(([, db]) => db);
  if (!present.length) return [];
  const header = [
    'per operation',
    "fsync'd commits (both databases)",
    'coordinator CPU ms',
    'daemon CPU ms',
    'PostgreSQL CPU ms',
    'all three CPU ms',
  ];
  const rows = present.map(([name, db]) => [
    name,
    fmt(db.write_transactions, 2),
    fmt(db.cpu_ms_coordinator, 2),
    fmt(db.cpu_ms_daemon, 2),
    fmt(db.cpu_ms_postgres, 2),
    fmt(cpuTotal(db), 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)];
}

/** CPU of coordinator, wallet daemon and PostgreSQL per operation (undefined if any is missing). */
function cpuTotal(db: Record<string, number> | undefined): number | undefined {
  if (!db) return undefined;
  const parts = [db.cpu_ms_coordinator, db.cpu_ms_daemon, db.cpu_ms_postgres];
  return parts.every((v) => v !== undefined) ? Math.round(parts.reduce((a, b) => a + b, 0) * 100) / 100 : undefined;
}

/** ", 12× 402" for items answered other than `ok` (a batch answers 200 with per-item errors). */
function otherItems(byStatus: Record<string, number> | undefined, ok: string): string {
  const other = Object.entries(byStatus ?? {}).filter(([code]) => code !== ok);
  return other.length ? `, items ${other.map(([code, n]) => `${fmt(n)}× ${code}`).join(', ')}` : '';
}

export interface Goal {
  goal: string;
  figure: string;
  /** undefined: not measured in this run (phase skipped or incomplete). */
  met?: boolean;
}

/** Issue #10's goals (and #14's and #16's), each with this run's figure, met or not. */
export function goalsOf(r: Report): Goal[] {
  const w = r.writes;
  const out: Goal[] = [];
  const c = w.create;
  const created = c ? (c.steps.create?.status['201'] ?? 0) / c.duration_s : undefined;
  const at = c && c.connections !== 64 ? ` (measured at ${c.connections} connections, not 64)` : '';
  out.push({
    goal: 'paid-job creation, single POST /v1/jobs at 64 connections: ≥ 1,000 jobs/s with p99 ≤ 100 ms',
    figure: c ? `${fmt(created)} jobs/s, p99 ${fmt(c.p99_ms, 1)} ms${at}` : 'not measured',
    met: c ? (created as number) >= 1000 && c.p99_ms <= 100 && c.connections >= 64 : undefined,
  });
  const cpu = cpuTotal(c?.db);
  out.push({
    goal: 'CPU per paid job, coordinator + wallet daemon + PostgreSQL: ≤ 2 ms',
    figure:
      cpu !== undefined
        ? `${fmt(cpu, 2)} ms (coordinator ${fmt(c.db.cpu_ms_coordinator, 2)}, daemon ${fmt(c.db.cpu_ms_daemon, 2)}, PostgreSQL ${fmt(c.db.cpu_ms_postgres, 2)})`
        : 'not measured',
    met: cpu !== undefined ? cpu <= 2 : undefined,
  });
  for (const kind of ['release', 'refund'] as const) {
    const x = w[kind];
    out.push({
      goal: `${kind} through single POST /v1/payments/{id}/${kind}: ≥ 1,000/s`,
      figure: x
        ? `${fmt(x.settlements_per_s)}/s over ${fmt(x.requests)} calls at ${x.connections} connections`
        : 'not measured',
      met: x ? x.settlements_per_s >= 1000 : undefined,
    });
  }
  const b = w.settle_batch;
  out.push({
    goal: 'POST /v1/payments/batch settling 10,000 payments in batches of 500: ≥ 5,000/s',
    figure: b
      ? `${fmt(b.settlements_per_s)}/s (${fmt(b.settlements)} of ${fmt(b.payments)} refunded${b.payments !== 10_000 ? ', not 10,000' : ''})`
      : 'not measured',
    met: b ? b.settlements_per_s >= 5000 && b.settlements === b.payments : undefined,
  });
  const h = w.webhooks;
  out.push({
    goal: 'webhooks: 10,000 events delivered to a local receiver: ≥ 2,000/s',
    figure: h
      ? `${fmt(h.per_s)}/s (${fmt(h.delivered)} of ${fmt(h.events)} in ${h.seconds} s, ${fmt(h.verified)} signatures verified, ${h.sent_twice} sent twice)`
      : 'not measured',
    met: h ? h.per_s >= 2000 && h.delivered === h.events && h.events >= 10_000 : undefined,
  });
  const rt = w.routing;
  out.push({
    goal: 'routing (#14): CPU per paid job routed over three providers (priority) ≤ 1.05 × one provider',
    figure: rt
      ? `×${rt.cpu_ratio} (${fmt(rt.three_providers_cpu_ms, 2)} ms against ${fmt(rt.one_provider_cpu_ms, 2)} ms; by volume split, groups split per provider: ×${rt.volume_split_cpu_ratio}, ${fmt(rt.volume_split_cpu_ms, 2)} ms)`
      : 'not measured',
    met: rt ? rt.cpu_ratio <= 1.05 : undefined,
  });
  const s = w.sweep;
  out.push({
    goal: 'expiry sweep: ≥ 5,000 refunds/s',
    figure: s
      ? s.complete
        ? `${fmt(s.refunds_per_s)}/s over ${fmt(s.escrows)} due escrows`
        : `incomplete: ${fmt(s.refunded)} of ${fmt(s.escrows)} in time`
      : 'not measured',
    met: s ? s.complete && (s.refunds_per_s ?? 0) >= 5000 : undefined,
  });
  const reads = r.reads.map((e) => ({ size: e.size, x: e.get_payment }));
  const worst = reads.reduce<(typeof reads)[number] | undefined>(
    (m, e) => (!m || e.x.req_per_s < m.x.req_per_s ? e : m),
    undefined,
  );
  out.push({
    goal: 'GET /v1/payments/{id} at 16 connections: ≥ 10,000 req/s',
    figure: worst
      ? `${fmt(worst.x.req_per_s)} req/s at worst (${reads.map((e) => `${fmt(e.x.req_per_s)} @ ${sizeText(e.size)}`).join(', ')}; ${worst.x.connections} connections)`
      : 'not measured',
    met: worst ? worst.x.req_per_s >= 10_000 && worst.x.connections >= 16 : undefined,
  });
  return out;
}

/** The goals block, plus the read-flatness checks of earlier work. */
function goals(r: Report): string[] {
  const out: string[] = ['Goals (issue #10):'];
  const mark = (ok: boolean | undefined) => (ok === undefined ? '  ?        ' : ok ? '  MET      ' : '  NOT MET  ');
  for (const g of r.goals ?? goalsOf(r)) out.push(`${mark(g.met)}${g.goal}: ${g.figure}`);
  if (r.reads.length >= 2) {
    out.push('', 'Reads stay flat as history grows:');
    const first = r.reads[0];
    const last = r.reads[r.reads.length - 1];
    for (const kind of ['get_payment', 'list_first', 'list_deep'] as ReadKind[]) {
      const a = first[kind].p99_ms;
      const b = last[kind].p99_ms;
      const change = a > 0 ? (b - a) / a : 0;
      out.push(
        `${mark(Math.abs(change) <= 0.2)}${kind} p99 within ±20 % from ${sizeText(first.size)} to ${sizeText(last.size)}: ${fmt(a, 1)} → ${fmt(b, 1)} ms (${change >= 0 ? '+' : ''}${Math.round(change * 100)} %)`,
      );
    }
  }
  return out;
}
