import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release as osRelease } from 'node:os';
import { join } from 'node:path';
import { Decimal } from 'decimal.js';
import { Pool } from 'pg';
import { freePort } from '../src/database/embedded-postgres';
import { FEED_HORIZON } from '../src/history/payment-history.repository';
import {
  CeilingResult,
  createCeiling,
  createGroupCeiling,
  hasPgbench,
  prepareReleaseQueue,
  readCeiling,
  ReadKind,
  releaseCeiling,
  settleGroupCeiling,
  sweepDecisionCeiling,
} from './ceiling';
import { CurvePoint, curveSvg } from './chart';
import { cpuSince, cpuSnapshot, renderCpu, trackBackends, trackPid, untrackPid } from './cpu';
import { BenchDaemon, faucet, ledgerTotals, newAddress, startDaemon } from './daemon';
import { extraDatabase, prepareDatabases, scratchDatabases, serverSettings } from './database';
import { DbActivity, renderDb } from './dbstats';
import { LoadResult, rotating, runLoad, Step } from './load';
import { measureRoutingCost } from './routing';
import { cleanupAll, COORDINATOR_ENTRY, installSignalHandlers, onCleanup, ROOT, startCoordinator } from './processes';
import { renderProfile, summarizeProfile } from './profile';
import { measureHistory } from './history';
import { goalsOf, renderReport, Report } from './report';
import { seededId, seedRows, SeedSpec } from './seed';
import { enableStatements, renderStatements, topStatements } from './statements';
import { now, percentile, progress, ratio, round, satisfiesEngines, sleep, stamp } from './util';
import { BenchReceiver, measureWebhookDelivery, registerBenchEndpoint } from './webhooks';

// ------------------------------------------------------------------ options

interface Options {
  quick: boolean;
  connections: number;
  readConnections: number;
  clients: number;
  miners: number;
  sizes: number[];
  createSeconds: number;
  minerSeconds: number;
  routingSeconds: number;
  routingRounds: number;
  routingRate: number;
  readSeconds: number;
  ceilingSeconds: number;
  ceilingClients: number[];
  explicit: number;
  sweep: number;
  poolSize: number | undefined;
  profile: boolean;
  statements: boolean;
  phases: Set<string>;
  waitIdle: number;
  batchJobs: number;
  batchSettle: number;
  batchConnections: number;
  curve: number[];
  curveSeconds: number;
  webhookEndpoint: boolean;
  webhookEvents: number;
  historySizes: number[];
}

/** Items per request of the batch phases: the routes' largest groups (docs/money-and-states.md, "Batches"). */
const JOB_GROUP = 100;
const SETTLE_GROUP = 500;

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) continue;
    const [name, value] = arg.slice(2).split('=', 2);
    if (value !== undefined) flags.set(name, value);
    else if (argv[i + 1] && !argv[i + 1].startsWith('--')) flags.set(name, argv[++i]);
    else flags.set(name, true);
  }
  if (flags.has('help')) {
    process.stdout.write(
      [
        'npm run bench [-- options]',
        '  --quick             under two minutes: 10k and 100k history, shorter runs, 1,000-escrow sweep',
        '  --connections N     HTTP connections of the write phases (default 64)',
        '  --read-connections N  HTTP connections of the read phases (default 16: latency, not queueing)',
        '  --clients N         client principals, each with its own funded wallet (default 4)',
        '  --miners N          miner principals (default 4)',
        '  --sizes a,b,c       history sizes for the read benchmarks (default 10000,100000,1000000)',
        '  --sweep N           due escrows for the expiry sweep (default 10000; quick 1000)',
        '  --explicit N        single release and single refund calls each (default 1000; quick 300)',
        '  --create-seconds S, --miner-seconds S, --read-seconds S, --ceiling-seconds S  phase lengths (default 15, 15, 6, 8; quick 5, 5, 2, 3)',
        '  --ceiling-clients a,b  connections of the per-item create/release ceilings (default pool size and --connections; quick pool size)',
        "  --pool N            DB_POOL_SIZE of the coordinator (default: the coordinator's default)",
        '  --phases a,b        any of reads,ceilings,writes,batch,curve,routing,sweep,webhooks (default: all)',
        '  --routing-seconds S seconds of each routing run (one provider, three by priority, three by volume split; default 6; quick 3)',
        '  --routing-rounds N  alternating rounds of those three runs; each figure is the median (default 5; quick 2)',
        '  --routing-rate R    paid jobs per second offered in each routing run, the same for all three (default 300)',
        '  --batch-jobs N      paid jobs created through POST /v1/jobs/batch, 100 per request (default 10000; quick 2000)',
        '  --batch-settle N    of those, payments refunded through POST /v1/payments/batch, 500 per request (default 10000; quick 2000)',
        '  --batch-connections N  HTTP connections of the batch phases and their ceilings (default 4)',
        '  --curve a,b,c       connections of the POST /v1/jobs sweep drawn as bench/results/<run>-create.svg (default 8,16,32,64,128; quick 16,64)',
        '  --curve-seconds S   seconds per point of that sweep (default 4; quick 2)',
        '  --phases history    payment history (#13), not in the default set: seeds --history-sizes payments by SQL, then list, summary, export and event-feed goals',
        '  --history-sizes a,b payments of the history phase before and after growing (default 10000,1000000; quick 10000,100000)',
        '  --webhook-events N  events the webhooks phase delivers to a local receiver (default 10000)',
        "  --webhook-endpoint  register a webhook endpoint for every event before the phases: each change also writes its outbox rows (delivery off on the main coordinator), to measure the triggers' cost",
        '  --profile           CPU-profile the coordinator (node --cpu-prof) and print where its time went',
        '  --statements        print the SQL statements PostgreSQL spent the most time on (pg_stat_statements)',
        '  --wait-idle [S]     on a shared machine, wait up to S seconds (default 600) until the CPUs are idle before starting',
        '  BENCH_SQL=…         SQL run once after the migrations (try an index before writing its migration)',
        '  BENCH_NODE_ARGS=…   Node flags for the coordinators (e.g. --max-semi-space-size=8, see README "Performance")',
        '  BENCH_PG=a=1,b=2    extra settings of the embedded PostgreSQL (try a server setting before making it a default;',
        '                      its log, auto_explain plans included, is .data/bench/<run>/postgres.log)',
        '  DATABASE_URL        a server to create the bench databases on (else embedded PostgreSQL)',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const quick = flags.has('quick');
  const num = (name: string, fallback: number) => {
    const v = flags.get(name);
    if (v === undefined || v === true) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: "${v}" is not a positive number`);
    return n;
  };
  const list = (name: string, fallback: number[]) => {
    const v = flags.get(name);
    return typeof v === 'string' ? v.split(',').map(Number) : fallback;
  };
  const connections = num('connections', 64);
  const poolFlag = flags.get('pool');
  const poolSize =
    typeof poolFlag === 'string'
      ? Number(poolFlag)
      : process.env.DB_POOL_SIZE
        ? Number(process.env.DB_POOL_SIZE)
        : undefined;
  return {
    quick,
    connections,
    readConnections: num('read-connections', 16),
    clients: num('clients', 4),
    miners: num('miners', 4),
    sizes: list('sizes', quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000]),
    createSeconds: num('create-seconds', quick ? 5 : 15),
    minerSeconds: num('miner-seconds', quick ? 5 : 15),
    routingSeconds: num('routing-seconds', quick ? 3 : 6),
    routingRounds: num('routing-rounds', quick ? 2 : 5),
    routingRate: num('routing-rate', 300),
    readSeconds: num('read-seconds', quick ? 2 : 6),
    ceilingSeconds: num('ceiling-seconds', quick ? 3 : 8),
    // The coordinator's pool size (what PostgreSQL sees from it) and the HTTP concurrency.
    ceilingClients: list('ceiling-clients', quick ? [poolSize ?? 10] : [poolSize ?? 10, connections]),
    explicit: num('explicit', quick ? 300 : 1000),
    sweep: num('sweep', quick ? 1000 : 10_000),
    poolSize,
    profile: flags.has('profile'),
    statements: flags.has('statements'),
    waitIdle: flags.has('wait-idle') ? num('wait-idle', 600) : 0,
    phases: new Set(
      typeof flags.get('phases') === 'string'
        ? String(flags.get('phases')).split(',')
        : ['reads', 'ceilings', 'writes', 'batch', 'curve', 'routing', 'sweep', 'webhooks'],
    ),
    batchJobs: num('batch-jobs', quick ? 2000 : 10_000),
    batchSettle: num('batch-settle', quick ? 2000 : 10_000),
    batchConnections: num('batch-connections', 4),
    curve: list('curve', quick ? [16, 64] : [8, 16, 32, 64, 128]),
    curveSeconds: num('curve-seconds', quick ? 2 : 4),
    webhookEndpoint: flags.has('webhook-endpoint'),
    webhookEvents: num('webhook-events', 10_000),
    historySizes: list('history-sizes', quick ? [10_000, 100_000] : [10_000, 1_000_000]),
  };
}

// ------------------------------------------------------------------ principals

interface Principal {
  id: string;
  key: string;
  wallet?: string;
}

const secret = () => randomBytes(16).toString('hex');
const JSON_HEADERS = { 'content-type': 'application/json' };
const AMOUNT = '0.001';
const JOB_BODY = JSON.stringify({
  payload: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } },
  constraints: {},
  ttl_seconds: 3600,
  payment_amount: AMOUNT,
  payment_currency: 'BTC',
  escrow_timeout_seconds: 3600,
});

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  installSignalHandlers();
  if (!existsSync(COORDINATOR_ENTRY))
    throw new Error(`${COORDINATOR_ENTRY} is missing: run \`npm run bench\`, which builds it`);
  const startedAt = new Date();
  const runId = stamp(startedAt);
  const logDir = join(ROOT, '.data', 'bench', runId);
  mkdirSync(logDir, { recursive: true });
  progress(
    `coordinator benchmark ${runId}${options.quick ? ' (quick)' : ''}: ${cpus().length} CPUs, logs under ${logDir}`,
  );
  const began = now();
  const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } })
    .engines.node;
  if (!satisfiesEngines(process.versions.node, engines))
    progress(
      `WARNING: Node ${process.versions.node} is outside package.json's engines (${engines}); the services run on it, ` +
        'so these figures are not what a supported Node gives (run the bench with Node 22 or 24 on PATH)',
    );

  if (options.waitIdle) await waitForIdle(options.waitIdle);
  const machineLoad = await loadAtStart();
  progress(
    `machine at start: load average ${machineLoad.loadavg}, ${machineLoad.busy_pct}% of ${cpus().length * 100}% CPU busy` +
      (machineLoad.busy_pct > 30 ? ' — something else is running; figures will be lower than on an idle machine' : ''),
  );
  const dbs = await prepareDatabases(
    `bench_${runId}_p${process.pid}`,
    options.statements,
    join(logDir, 'postgres.log'),
  );
  const settings = await serverSettings(dbs.url);
  const statements = options.statements && (await enableStatements(dbs.url));
  const daemon = await startDaemon(
    dbs.walletUrl,
    join(logDir, 'wallet-daemon.log'),
    options.profile ? logDir : undefined,
  );
  trackPid('wallet daemon', daemon.pid);

  // Principals: clients with funded wallets, miners with payout addresses, an admin.
  const clients: Principal[] = [];
  for (let k = 0; k < options.clients; k++) {
    const wallet = await newAddress(daemon);
    await faucet(daemon, wallet, '100000');
    clients.push({ id: `bench-client-${k}`, key: `bc${k}-${secret()}`, wallet });
  }
  const miners: Principal[] = [];
  for (let k = 0; k < options.miners; k++)
    miners.push({ id: `bench-miner-${k}`, key: `bm${k}-${secret()}`, wallet: await newAddress(daemon) });
  const admin: Principal = { id: 'bench-admin', key: `ba-${secret()}` };
  progress(
    `${clients.length} clients funded with 100000 BTC each (BTC max per payment is 1000; each job pays ${AMOUNT}), ${miners.length} miners`,
  );

  const { privateKey } = generateKeyPairSync('ed25519');
  const coordinatorEnv = (port: number, sweeps: boolean, databaseUrl = dbs.url): Record<string, string> => ({
    NODE_ENV: 'production',
    PORT: String(port),
    DATA_DIR: join(ROOT, '.data', 'bench'),
    DATABASE_URL: databaseUrl,
    WALLET_DAEMON_URL: daemon.url,
    WALLET_DAEMON_TOKEN: daemon.token,
    RECEIPT_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    API_KEYS: [
      ...clients.map((c) => `client:${c.id}:${c.key}:${c.wallet}`),
      ...miners.map((m) => `miner:${m.id}:${m.key}`),
      `admin:${admin.id}:${admin.key}`,
    ].join(','),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_MINUTE: '0',
    SWEEPS_ENABLED: sweeps ? 'true' : 'false',
    JOB_SWEEP_INTERVAL_MS: sweeps ? '100' : '1000',
    ESCROW_SWEEP_INTERVAL_MS: sweeps ? '100' : '1000',
    ...(options.poolSize ? { DB_POOL_SIZE: String(options.poolSize) } : {}),
    // The bench's receivers are on loopback; only the webhooks phase's own coordinator delivers.
    WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
    WEBHOOK_DELIVERY_ENABLED: 'false',
  });

  const profileDir = options.profile ? logDir : undefined;
  const mainPort = await freePort();
  const coordinator = await startCoordinator(
    'main',
    coordinatorEnv(mainPort, false),
    join(logDir, 'coordinator.log'),
    profileDir,
  );
  progress(
    `coordinator at ${coordinator.url} (pid ${coordinator.pid}), sweeps off, DB pool ${options.poolSize ?? 'default (10)'}`,
  );
  trackPid('coordinator', coordinator.pid);
  const base = coordinator.url;

  const db = new Pool({ connectionString: dbs.url, max: 4, application_name: 'bench' });
  onCleanup('bench pg pool', () => db.end());
  const walletDb = new Pool({ connectionString: dbs.walletUrl, max: 1, application_name: 'bench' });
  onCleanup('bench wallet pg pool', () => walletDb.end());
  trackBackends(db, [new URL(dbs.url).pathname.slice(1), new URL(dbs.walletUrl).pathname.slice(1)]);

  if (process.env.BENCH_NODE_ARGS) progress(`BENCH_NODE_ARGS: coordinators run with ${process.env.BENCH_NODE_ARGS}`);
  if (process.env.BENCH_SQL) {
    // Experiments: e.g. BENCH_SQL='CREATE INDEX … ' to try a schema change before it goes into a migration.
    progress(`BENCH_SQL: ${process.env.BENCH_SQL}`);
    await db.query(process.env.BENCH_SQL);
  }

  for (const m of miners) {
    const r = await fetch(`${base}/v1/miners/register`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, 'x-api-key': m.key },
      body: JSON.stringify({ payout_address: m.wallet }),
    });
    if (r.status !== 200) throw new Error(`miner registration → ${r.status} ${await r.text()}`);
  }

  if (options.webhookEndpoint) {
    const receiver = await BenchReceiver.start();
    await registerBenchEndpoint(base, admin.key, receiver);
    progress('webhook endpoint registered for every event type: changes write outbox rows (not delivered)');
  }

  const report: Report = {
    run_id: runId,
    started_at: startedAt.toISOString(),
    quick: options.quick,
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gib: round(totalmem() / 2 ** 30, 1),
      kernel: osRelease(),
      node: process.version,
      postgres: `${dbs.version} (${dbs.server})`,
      postgres_settings: settings,
      load_at_start: machineLoad,
    },
    options: { ...options, phases: [...options.phases], bench_sql: process.env.BENCH_SQL },
    reads: [],
    ceilings: { create: [], release: [], reads: [] },
    writes: {},
    rss_mb: {},
  };
  const usePgbench = hasPgbench();
  const poolSize = options.poolSize ?? 10;
  progress(usePgbench ? 'ceilings with pgbench' : 'pgbench not found: ceilings with a plain pg script');

  // ---------------------------------------------------------------- reads at growing history
  if (options.phases.has('reads')) {
    const seedSpec: SeedSpec = {
      clientId: clients[0].id,
      minerId: miners[0].id,
      wallet: clients[0].wallet as string,
      payee: miners[0].wallet as string,
      baseMs: Date.now() - 40 * 86_400_000,
    };
    let seeded = 0;
    const seedClient = await db.connect();
    try {
      for (const size of options.sizes) {
        progress(`reads at ${size.toLocaleString('en-US')} payments: seeding by SQL`);
        await seedRows(seedClient, seeded, size, seedSpec);
        seeded = size;
        await checkSeededRead(base, clients[0].key, seededId('p', size - 1, seedSpec.baseMs));
        // Before the first size, V8 compiles the hot paths of a fresh process; before every
        // size, the pages the seeding left cold are read in once (at 1M the first two seconds
        // ran at 70 % of the rest): each size is measured in the same, steady state.
        progress('  warm-up (not measured)');
        await measureReads(base, { ...options, readSeconds: 1 }, clients[0].key, size, seedSpec.baseMs, true);
        const entry = { size, ...(await measureReads(base, options, clients[0].key, size, seedSpec.baseMs)) };
        const ceilings: Partial<Record<ReadKind, CeilingResult>> = {};
        for (const kind of ['get_payment', 'list_first', 'list_deep'] as ReadKind[]) {
          ceilings[kind] = await readCeiling(
            kind,
            dbs.url,
            poolSize,
            Math.max(1, Math.round(options.readSeconds / 2)),
            size,
            clients[0].id,
            seedSpec.baseMs,
            usePgbench,
          );
          report.ceilings.reads.push(ceilings[kind]);
        }
        progress(
          `  ceilings (${poolSize} clients, the query alone): get ${ceilings.get_payment?.tps}/s, first page ${ceilings.list_first?.tps}/s, random page ${ceilings.list_deep?.tps}/s`,
        );
        report.reads.push({ ...entry, ceilings });
      }
    } finally {
      seedClient.release();
    }
    coordinator.assertAlive('the read phases');
    report.rss_mb.reads = coordinator.rss.takePhasePeakMb();
  }

  // ---------------------------------------------------------------- ceilings for writes
  let createCeil: number | undefined;
  let releaseCeil: number | undefined;
  if (options.phases.has('ceilings')) {
    progress(
      `ceilings: the same SQL directly against ${dbs.server === 'embedded' ? 'the embedded server' : 'the DATABASE_URL server'}, in scratch databases with the service's schemas`,
    );
    // Never in the measured databases: see scratchDatabases.
    const scratch = await scratchDatabases(dbs.adminUrl, `${new URL(dbs.url).pathname.slice(1)}_ceiling`);
    const scratchDb = new Pool({ connectionString: scratch.url, max: 4, application_name: 'bench' });
    try {
      for (const c of options.ceilingClients)
        report.ceilings.create.push(await createCeiling(scratch.url, c, options.ceilingSeconds, usePgbench));
      const queued = await prepareReleaseQueue(scratchDb);
      const share = Math.floor(queued / options.ceilingClients.length);
      for (const c of options.ceilingClients)
        report.ceilings.release.push(await releaseCeiling(scratch.url, c, share, usePgbench));
      report.ceilings.sweep_decisions = await sweepDecisionCeiling(scratchDb, options.sweep, 1000);
      if (options.phases.has('batch')) {
        // The batch phases' limit: the same rows, a group per transaction, at the same connections.
        report.ceilings.create_group = await createGroupCeiling(
          scratch,
          options.batchConnections,
          JOB_GROUP,
          options.ceilingSeconds,
        );
        report.ceilings.settle_group = await settleGroupCeiling(
          scratchDb,
          scratch,
          options.batchConnections,
          SETTLE_GROUP,
          options.batchSettle,
        );
      }
    } finally {
      await scratchDb.end();
    }
    createCeil = Math.max(...report.ceilings.create.map((c) => c.tps));
    releaseCeil = Math.max(...report.ceilings.release.map((c) => c.tps));
    progress(
      `ceilings: create ${createCeil} tx/s, release ${releaseCeil} tx/s, sweep decisions ${report.ceilings.sweep_decisions.per_s}/s`,
    );
  }

  const nextClient = rotating(clients);
  const createStep = (): Step => ({
    name: 'create',
    method: 'POST',
    path: '/v1/jobs',
    headers: { ...JSON_HEADERS },
    body: JOB_BODY,
    setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'x-api-key': nextClient().key } }),
  });
  const nextMiner = rotating(miners);
  const pollStep = (): Step => ({
    name: 'poll',
    method: 'POST',
    path: '/v1/miners/poll',
    setupRequest: (req, context) => {
      context.miner = nextMiner();
      return { ...req, headers: { ...req.headers, 'x-api-key': context.miner.key } };
    },
    onResponse: (status, body, context) => {
      context.jobId = status === 200 ? (JSON.parse(body) as { job_id: string }).job_id : undefined;
    },
  });
  const owners = new Map(clients.map((c) => [c.id, c]));
  const dbNames = { coordinator: new URL(dbs.url).pathname.slice(1), wallet: new URL(dbs.walletUrl).pathname.slice(1) };
  const activity = () => DbActivity.begin(db, dbNames);
  /** Database work and CPU per operation of a phase (see dbstats.ts, cpu.ts). */
  const measured = async (
    a: DbActivity,
    ops: number,
    load?: { cpu?: Record<string, number>; cpu_s?: number; duration_s?: number; seconds?: number },
    cpuOps = ops,
  ) => {
    const per: Record<string, number> = await a.perOperation(ops);
    progress(`    db: ${renderDb(per)}`);
    const seconds = load?.cpu_s ?? load?.duration_s ?? load?.seconds;
    if (load?.cpu && seconds && cpuOps > 0) {
      for (const [name, key] of [
        ['coordinator', 'cpu_ms_coordinator'],
        ['wallet daemon', 'cpu_ms_daemon'],
        ['postgres backends', 'cpu_ms_postgres'],
      ]) {
        if (load.cpu[name] !== undefined) per[key] = round(((load.cpu[name] / 100) * seconds * 1000) / cpuOps, 2);
      }
      progress(
        `    cpu per operation: coordinator ${per.cpu_ms_coordinator ?? '–'} ms, wallet daemon ${per.cpu_ms_daemon ?? '–'} ms, postgres ${per.cpu_ms_postgres ?? '–'} ms`,
      );
    }
    return per;
  };

  if (options.phases.has('writes')) {
    // -------------------------------------------------------------- paid-job creation
    const warmups = options.quick ? 100 : 200;
    progress(`paid-job creation: warm-up (${warmups} creates, not measured)`);
    await runLoad('warm-up create', {
      url: base,
      connections: 16,
      amount: warmups,
      steps: [createStep()],
      expect: { create: [201] },
    });
    progress(
      `paid-job creation: POST /v1/jobs with payment, ${options.connections} connections, ${options.createSeconds}s`,
    );
    const createStarted = new Date();
    const createDb = await activity();
    const create = await runLoad('create', {
      url: base,
      connections: options.connections,
      duration: options.createSeconds,
      steps: [createStep()],
      expect: { create: [201] },
    });
    await settled(db, createStarted);
    const createdStates = await paymentStates(db, createStarted);
    progress(`  payments created in the phase by status: ${JSON.stringify(createdStates)}`);
    report.writes.create = {
      ...create,
      payments_by_status: createdStates,
      ceiling_tps: createCeil,
      ratio: ratio(create.req_per_s, createCeil),
    };
    report.writes.create.db = await measured(
      createDb,
      Object.values(createdStates).reduce((a, b) => a + b, 0),
      create,
      create.steps.create?.status['201'] ?? 0,
    );
    report.writes.create.stages = await createStages(db, walletDb, createStarted);
    progress(
      `    stages (p50/p99 ms): ${Object.entries(report.writes.create.stages)
        .map(([k, v]) => `${k} ${(v as number[]).join('/')}`)
        .join(', ')}`,
    );
    coordinator.assertAlive('paid-job creation');
    report.rss_mb.create = coordinator.rss.takePhasePeakMb();

    // -------------------------------------------------------------- explicit refunds (queued jobs, by their owner)
    const refundTargets = await targets(
      db,
      'queued',
      Math.min(options.explicit, Math.floor((await countQueued(db)) / 5)),
    );
    if (refundTargets.length) {
      progress(`explicit refunds: POST /v1/payments/{id}/refund on ${refundTargets.length} queued jobs (owner)`);
      const refundDb = await activity();
      const r = await runLoad('refund', {
        url: base,
        connections: options.connections,
        amount: refundTargets.length,
        steps: [settleStep('refund', refundTargets, owners)],
        expect: { refund: [200] },
      });
      await settled(db, createStarted);
      report.writes.refund = {
        ...r,
        settlements_per_s: settledRate(r, 'refund'),
        ceiling_tps: releaseCeil,
        ratio: ratio(settledRate(r, 'refund'), releaseCeil),
      };
      report.writes.refund.db = await measured(refundDb, r.steps.refund?.status['200'] ?? 0, r);
    }

    // -------------------------------------------------------------- explicit releases (polled jobs, by their owner)
    const toRelease = Math.min(options.explicit, Math.floor((await countQueued(db)) / 4));
    if (toRelease > 0) {
      coordinator.assertAlive('the explicit refunds');
      progress(`explicit releases: ${toRelease} jobs polled by miners, then POST /v1/payments/{id}/release (owner)`);
      report.writes.poll = await runLoad('poll', {
        url: base,
        connections: options.connections,
        amount: toRelease,
        steps: [pollStep()],
        expect: { poll: [200] },
      });
      const releaseTargets = await targets(db, 'running', toRelease);
      if (!releaseTargets.length) throw new Error('explicit releases: no polled job to release (did the polls fail?)');
      const releaseDb = await activity();
      const r = await runLoad('release', {
        url: base,
        connections: options.connections,
        amount: releaseTargets.length,
        steps: [settleStep('release', releaseTargets, owners)],
        expect: { release: [200] },
      });
      await settled(db, createStarted);
      report.writes.release = {
        ...r,
        settlements_per_s: settledRate(r, 'release'),
        ceiling_tps: releaseCeil,
        ratio: ratio(settledRate(r, 'release'), releaseCeil),
      };
      report.writes.release.db = await measured(releaseDb, r.steps.release?.status['200'] ?? 0, r);
    }

    // -------------------------------------------------------------- miners: poll → result (each result releases)
    const available = await countQueued(db);
    progress(
      `miner completions: poll → result (released to the miner) over ${available} queued paid jobs, ${options.minerSeconds}s at most`,
    );
    // Until the queue runs dry (the first 204 from a poll) or the time is up.
    const minerDb = await activity();
    const minerStarted = new Date();
    const miner = await runLoad('miner', {
      url: base,
      connections: options.connections,
      duration: options.minerSeconds,
      stopWhen: (step, status) => step === 'poll' && status === 204,
      steps: [
        pollStep(),
        {
          name: 'result',
          method: 'POST',
          headers: { ...JSON_HEADERS },
          body: JSON.stringify({ result: { text: 'Hi!' } }),
          setupRequest: (req, context) =>
            context.jobId
              ? {
                  ...req,
                  path: `/v1/miners/jobs/${context.jobId}/result`,
                  headers: { ...req.headers, 'x-api-key': context.miner.key },
                }
              : null,
        },
      ],
      expect: { poll: [200, 204], result: [200] },
    });
    await settled(db, createStarted);
    report.writes.miner = {
      ...miner,
      settlements_per_s: settledRate(miner, 'result'),
      ceiling_tps: releaseCeil,
      ratio: ratio(settledRate(miner, 'result'), releaseCeil),
    };
    // Per job released to a miner in the phase (results still in flight when the run stopped included).
    const { rows: releasedRows } = await db.query(
      `SELECT count(*)::int AS n FROM job_payments WHERE status = 'released' AND released_at >= $1 AND settled_by LIKE 'bench-miner-%'`,
      [minerStarted],
    );
    report.writes.miner.db = await measured(minerDb, releasedRows[0].n, miner, miner.steps.result?.status['200'] ?? 0);
    coordinator.assertAlive('the settlement phases');
    report.rss_mb.settle = coordinator.rss.takePhasePeakMb();
  }

  // ---------------------------------------------------------------- batch routes
  if (options.phases.has('batch')) {
    const group = await measureBatches(base, db, clients, owners, options, activity, measured, report);
    if (group) {
      coordinator.assertAlive('the batch phases');
      report.rss_mb.batch = coordinator.rss.takePhasePeakMb();
    }
  }

  // ---------------------------------------------------------------- throughput and p99 against connections
  if (options.phases.has('curve')) {
    report.writes.create_curve = await measureCurve(base, db, options, createStep);
    coordinator.assertAlive('the connections sweep');
    report.rss_mb.curve = coordinator.rss.takePhasePeakMb();
  }

  // ---------------------------------------------------------------- payment history and reporting
  if (options.phases.has('history')) {
    // The small list size lives in a database of its own, with its own coordinator, so both
    // sizes can be measured in alternating blocks (see bench/history.ts).
    const smallUrl = await extraDatabase(dbs.adminUrl, `${new URL(dbs.url).pathname.slice(1)}_small`);
    const smallDb = new Pool({ connectionString: smallUrl, max: 2, application_name: 'bench' });
    onCleanup('bench pg pool (small history)', () => smallDb.end());
    const smallCoordinator = await startCoordinator(
      'history-small',
      coordinatorEnv(await freePort(), false, smallUrl),
      join(logDir, 'coordinator-history-small.log'),
    );
    let history: Awaited<ReturnType<typeof measureHistory>>;
    try {
      history = await measureHistory({
        db,
        base,
        adminKey: admin.key,
        coordinator,
        small: { db: smallDb, base: smallCoordinator.url },
        createStep,
        connections: options.connections,
        sizes: [options.historySizes[0], options.historySizes[1]],
        // p99 of 2,000 is the 20th slowest: one GC pause or scheduler hiccup cannot decide it.
        samples: options.quick ? 100 : 2000,
        listRounds: options.quick ? 2 : 10,
        loadSeconds: options.quick ? 5 : 10,
      });
    } finally {
      await smallCoordinator.stop();
    }
    writeFileSync(join(logDir, 'history.json'), JSON.stringify(history, null, 2));
    progress(`history figures in ${join(logDir, 'history.json')}`);
    coordinator.assertAlive('the history phase');
    report.rss_mb.history = coordinator.rss.takePhasePeakMb();
  }

  // ---------------------------------------------------------------- webhook delivery
  if (options.phases.has('webhooks')) {
    report.writes.webhooks = await measureWebhookDelivery(
      db,
      base,
      admin.key,
      clients[0].key,
      coordinatorEnv(await freePort(), false),
      join(logDir, 'coordinator-webhooks.log'),
      options.webhookEvents,
      profileDir,
    );
    coordinator.assertAlive('the webhooks phase');
  }

  // ---------------------------------------------------------------- routing cost (#14)
  if (options.phases.has('routing')) {
    progress(
      `routing: POST /v1/jobs with payment, one provider against three (priority, volume split), ${options.connections} connections at ${options.routingRate} jobs/s, ${options.routingSeconds}s × ${options.routingRounds} rounds each`,
    );
    report.writes.routing = await measureRoutingCost({
      main: coordinator,
      env: (port) => coordinatorEnv(port, false),
      daemon,
      logFile: join(logDir, 'coordinator-routed.log'),
      connections: options.connections,
      seconds: options.routingSeconds,
      rounds: options.routingRounds,
      rate: options.routingRate,
      step: createStep,
    });
    progress(
      `  routing: CPU per paid job ${report.writes.routing.one_provider_cpu_ms} ms with one provider; over three ${report.writes.routing.three_providers_cpu_ms} ms by priority (×${report.writes.routing.cpu_ratio}), ${report.writes.routing.volume_split_cpu_ms} ms by volume split (×${report.writes.routing.volume_split_cpu_ratio})`,
    );
    coordinator.assertAlive('the routing phase');
  }

  // ---------------------------------------------------------------- expiry sweep
  let sweepStarted: Date | undefined;
  if (options.phases.has('sweep')) {
    progress(`expiry sweep: creating ${options.sweep} paid jobs through the API (real holds at the daemon)`);
    sweepStarted = new Date();
    const sweepCreateDb = await activity();
    const sweepCreate = await runLoad('create (sweep set)', {
      url: base,
      connections: options.connections,
      amount: options.sweep,
      steps: [createStep()],
      expect: { create: [201] },
    });
    await settled(db, sweepStarted);
    report.writes.create_sustained = {
      ...sweepCreate,
      ceiling_tps: createCeil,
      ratio: ratio(sweepCreate.req_per_s, createCeil),
    };
    report.writes.create_sustained.db = await measured(sweepCreateDb, options.sweep, sweepCreate);
    coordinator.assertAlive('creating the sweep set');
    report.rss_mb.sweep_create = coordinator.rss.takePhasePeakMb();
  }
  if (process.env.BENCH_HOLD) {
    // Debugging aid: keep everything up for manual requests until Ctrl-C.
    writeFileSync(
      join(logDir, 'hold.json'),
      JSON.stringify({ base, db: dbs.url, daemon: daemon.url, clients, miners, admin }, null, 2),
    );
    progress(`BENCH_HOLD: services up; details in ${join(logDir, 'hold.json')}; Ctrl-C to stop`);
    await new Promise(() => undefined);
  }

  report.rss_mb.main_peak_vmhwm = coordinator.rss.hwmMb();
  const consistency = await checkMoney(db, daemon);
  report.consistency = consistency;
  progress(
    `money check: coordinator escrowed ${consistency.coordinator_escrowed} BTC, daemon held ${consistency.daemon_held} BTC ` +
      `(${consistency.held_matches ? 'equal' : 'DIFFERENT'}), ledger conservation ${consistency.conservation_ok ? 'ok' : 'BROKEN'}`,
  );
  await coordinator.stop();
  untrackPid('coordinator');
  if (profileDir) report.profiles = { main: summarizeProfile(join(profileDir, 'main.cpuprofile')) };

  if (sweepStarted) {
    const sweepDb = await activity();
    report.writes.sweep = await measureSweep(
      db,
      daemon,
      sweepStarted,
      options,
      coordinatorEnv,
      logDir,
      report,
      releaseCeil,
      profileDir,
    );
    report.writes.sweep.db = await measured(sweepDb, report.writes.sweep.escrows, report.writes.sweep);
    if (profileDir)
      report.profiles = { ...report.profiles, sweeper: summarizeProfile(join(profileDir, 'sweeper.cpuprofile')) };
  }

  if (options.profile) {
    await daemon.stop();
    report.profiles = { ...report.profiles, wallet_daemon: summarizeProfile(join(logDir, 'wallet-daemon.cpuprofile')) };
  }

  // ---------------------------------------------------------------- report
  report.total_seconds = round((now() - began) / 1000);
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  report.goals = goalsOf(report);
  const text = renderReport(report);
  process.stdout.write(`\n${text}\n`);
  for (const p of Object.values(report.profiles ?? {})) if (p) process.stdout.write(`\n${renderProfile(p)}\n`);
  if (statements) {
    report.statements = await topStatements(
      dbs.url,
      [dbs.url, dbs.walletUrl].map((u) => new URL(u).pathname.slice(1)),
    );
    process.stdout.write(`\n${renderStatements(report.statements)}\n`);
  }
  const json = JSON.stringify(report, null, 2);
  writeFileSync(join(resultsDir, `${runId}.json`), json);
  writeFileSync(join(resultsDir, 'latest.json'), json);
  progress(`results: bench/results/${runId}.json (+ latest.json); total ${report.total_seconds}s`);
  const curve = report.writes.create_curve?.points as CurvePoint[] | undefined;
  if (curve?.length) {
    const svg = curveSvg(
      curve,
      'Paid-job creation, single POST /v1/jobs: throughput and p99 against connections',
      `run ${runId}${options.quick ? ' (--quick)' : ''} · ${options.curveSeconds} s per point · ${cpus().length} CPUs shared by coordinator, daemon, PostgreSQL, load`,
      { throughput: 1000, p99: 100 },
    );
    writeFileSync(join(resultsDir, `${runId}-create.svg`), svg);
    writeFileSync(join(resultsDir, 'latest-create.svg'), svg);
    progress(`chart: bench/results/${runId}-create.svg (+ latest-create.svg)`);
  }
}

// ------------------------------------------------------------------ reads

async function checkSeededRead(base: string, key: string, paymentId: string): Promise<void> {
  const r = await fetch(`${base}/v1/payments/${paymentId}`, { headers: { 'x-api-key': key } });
  const body = (await r.json()) as { status?: string };
  if (r.status !== 200 || !['released', 'refunded'].includes(String(body.status)))
    throw new Error(`seeded payment ${paymentId} reads as ${r.status} ${JSON.stringify(body)}`);
}

async function measureReads(
  base: string,
  options: Options,
  key: string,
  size: number,
  baseMs: number,
  quiet = false,
): Promise<Record<ReadKind, LoadResult>> {
  const pick = () => Math.floor(Math.random() * size);
  const withKey = (path: () => string) => (req: Step) => ({
    ...req,
    path: path(),
    headers: { ...req.headers, 'x-api-key': key },
  });
  const run = (name: ReadKind, path: () => string) =>
    runLoad(`${quiet ? 'warm-up ' : ''}${name}@${size}`, {
      url: base,
      connections: options.readConnections,
      duration: options.readSeconds,
      steps: [{ name, method: 'GET', setupRequest: withKey(path) as never }],
      expect: { [name]: [200] },
    });
  return {
    get_payment: await run('get_payment', () => `/v1/payments/${seededId('p', pick(), baseMs)}`),
    list_first: await run('list_first', () => '/v1/jobs?limit=20'),
    list_deep: await run(
      'list_deep',
      () => `/v1/jobs?limit=20&cursor=${Buffer.from(seededId('j', pick(), baseMs)).toString('base64url')}`,
    ),
  };
}

// ------------------------------------------------------------------ writes

interface Target {
  payment_id: string;
  client_id: string;
}

/** Escrowed payments of bench clients whose job is in `state`, newest first. */
async function targets(db: Pool, state: 'queued' | 'running', limit: number): Promise<Target[]> {
  const { rows } = await db.query<Target>(
    `SELECT p.payment_id, p.client_id FROM job j JOIN job_payments p ON p.payment_id = j.payment_id
      WHERE j.state = $1 AND j.payment_status = 'escrowed' AND p.client_id LIKE 'bench-client-%'
      ORDER BY j.job_id DESC LIMIT $2`,
    [state, limit],
  );
  return rows;
}

async function countQueued(db: Pool): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM job WHERE state = 'queued' AND payment_status = 'escrowed'`,
  );
  return rows[0].n;
}

function settleStep(kind: 'release' | 'refund', list: Target[], owners: Map<string, Principal>): Step {
  let next = 0;
  return {
    name: kind,
    method: 'POST',
    headers: { ...JSON_HEADERS },
    body: JSON.stringify({ reason: `bench ${kind}` }),
    setupRequest: (req) => {
      const t = list[Math.min(next++, list.length - 1)];
      return {
        ...req,
        path: `/v1/payments/${t.payment_id}/${kind}`,
        headers: { ...req.headers, 'x-api-key': (owners.get(t.client_id) as Principal).key },
      };
    },
  };
}

/** Settlements per second: successful responses of the settling step over the run. */
function settledRate(r: LoadResult, step: string): number {
  return round((r.steps[step]?.status['200'] ?? 0) / r.duration_s);
}

/**
 * Where a paid job's creation spends its time, from the rows' own timestamps (each is the
 * start of the transaction that wrote it): the coordinator's first transaction → the
 * daemon's escrow transaction (commit + HTTP call + daemon's pool), and the daemon's
 * transaction → the coordinator's second transaction (daemon work + commit + answer +
 * coordinator's pool).
 */
async function createStages(db: Pool, walletDb: Pool, since: Date): Promise<Record<string, number[]>> {
  const { rows } = await db.query<{ payment_id: string; created: string; escrowed: string }>(
    `SELECT payment_id::text, extract(epoch FROM created_at)::float8 * 1000 AS created, extract(epoch FROM escrowed_at)::float8 * 1000 AS escrowed
       FROM job_payments WHERE created_at >= $1 AND escrowed_at IS NOT NULL AND client_id LIKE 'bench-client-%'`,
    [since],
  );
  const { rows: held } = await walletDb.query<{ payment_id: string; at: string }>(
    `SELECT payment_id, extract(epoch FROM created_at)::float8 * 1000 AS at FROM wallet_daemon.escrows WHERE payment_id = ANY($1)`,
    [rows.map((r) => r.payment_id)],
  );
  const daemonAt = new Map(held.map((h) => [h.payment_id, Number(h.at)]));
  const toDaemon: number[] = [];
  const fromDaemon: number[] = [];
  for (const r of rows) {
    const d = daemonAt.get(r.payment_id);
    if (d === undefined) continue;
    toDaemon.push(d - Number(r.created));
    fromDaemon.push(Number(r.escrowed) - d);
  }
  const pp = (v: number[]) => [round(percentile(v, 50), 1), round(percentile(v, 99), 1)];
  return { 'pending tx → daemon tx': pp(toDaemon), 'daemon tx → escrowed tx': pp(fromDaemon) };
}

/**
 * Waits until the coordinator's database sessions are idle: requests still in flight when a
 * load stopped (autocannon closes its sockets; the server finishes the work) must not run
 * into the next phase.
 */
async function quiesce(db: Pool, what: string, maxSeconds = 120): Promise<void> {
  const began = Date.now();
  let said = 0;
  for (;;) {
    const { rows } = await db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    );
    if (rows[0].n === 0) break;
    if (Date.now() - began > maxSeconds * 1000) {
      progress(`  ${what}: ${rows[0].n} statements still running after ${maxSeconds}s; going on`);
      return;
    }
    if (Date.now() - said > 5000) {
      said = Date.now();
      progress(`  ${what}: waiting for ${rows[0].n} statements of requests still in flight`);
    }
    await sleep(100);
  }
  if (Date.now() - began > 1000)
    progress(`  ${what}: in-flight work finished after ${round((Date.now() - began) / 1000, 1)}s`);
}

/** Waits for requests still in flight when the load stopped (their payments still `pending`). */
async function settled(db: Pool, since: Date): Promise<void> {
  await quiesce(db, 'after the load');
  for (let i = 0; i < 300; i++) {
    const { rows } = await db.query(
      `SELECT count(*)::int AS n FROM job_payments WHERE status IN ('pending','releasing','refunding') AND created_at >= $1`,
      [since],
    );
    if (rows[0].n === 0) return;
    await sleep(100);
  }
}

async function paymentStates(db: Pool, since: Date): Promise<Record<string, number>> {
  const { rows } = await db.query(
    `SELECT status, count(*)::int AS n FROM job_payments WHERE client_id LIKE 'bench-client-%' AND created_at >= $1 GROUP BY status`,
    [since],
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function checkMoney(db: Pool, daemon: BenchDaemon) {
  const { rows } = await db.query(
    `SELECT coalesce(sum(amount), 0)::text AS s, count(*)::int AS n FROM job_payments WHERE status = 'escrowed' AND client_id LIKE 'bench-client-%'`,
  );
  const totals = await ledgerTotals(daemon);
  // Exact decimals: the check must not pass on a rounding difference.
  const escrowed = new Decimal(rows[0].s);
  const held = new Decimal(totals.held);
  return {
    coordinator_escrowed: escrowed.toFixed(),
    coordinator_escrowed_count: rows[0].n,
    daemon_held: held.toFixed(),
    held_matches: held.eq(escrowed),
    conservation_ok: new Decimal(totals.balances).plus(held).eq(totals.minted),
  };
}

// ------------------------------------------------------------------ batch routes

type Measured = (
  a: DbActivity,
  ops: number,
  load?: { cpu?: Record<string, number>; cpu_s?: number; duration_s?: number; seconds?: number },
  cpuOps?: number,
) => Promise<Record<string, number>>;

/** Counts of the per-item `status_code`s in batch answers (and a check of the item's own state). */
function batchStep(
  name: string,
  path: string,
  next: (req: Step) => { body: string; key: string } | null,
  counted: Record<string, number>,
  ok?: (item: any) => boolean,
): Step {
  return {
    name,
    method: 'POST',
    path,
    headers: { ...JSON_HEADERS },
    setupRequest: (req) => {
      const n = next(req as Step);
      return n ? { ...req, body: n.body, headers: { ...req.headers, 'x-api-key': n.key } } : null;
    },
    onResponse: (status, body) => {
      if (status !== 200) return;
      for (const item of (JSON.parse(body) as { items: { status_code: number }[] }).items) {
        const key =
          ok && item.status_code < 300 && !ok(item)
            ? `${item.status_code} (unexpected state)`
            : String(item.status_code);
        counted[key] = (counted[key] ?? 0) + 1;
      }
    },
  };
}

/**
 * POST /v1/jobs/batch (paid jobs, 100 per request) and then POST /v1/payments/batch
 * refunding those payments (500 per request, by their owners: a client may refund a job
 * that has not run). Rates count items answered 201 / refunded, over the load's duration.
 */
async function measureBatches(
  base: string,
  db: Pool,
  clients: Principal[],
  owners: Map<string, Principal>,
  options: Options,
  activity: () => Promise<DbActivity>,
  measured: Measured,
  report: Report,
): Promise<boolean> {
  const connections = options.batchConnections;
  const nextClient = rotating(clients);
  const jobsBody = JSON.stringify({ items: Array.from({ length: JOB_GROUP }, () => JSON.parse(JOB_BODY)) });
  const createBatch = (counted: Record<string, number>) =>
    batchStep('create_batch', '/v1/jobs/batch', () => ({ body: jobsBody, key: nextClient().key }), counted);
  progress(`batch create: warm-up (${connections * 2} requests of ${JOB_GROUP}, not measured)`);
  await runLoad('warm-up create batch', {
    url: base,
    connections,
    amount: connections * 2,
    steps: [createBatch({})],
    expect: { create_batch: [200] },
  });
  await quiesce(db, 'after the warm-up');

  const requests = Math.ceil(options.batchJobs / JOB_GROUP);
  progress(
    `batch create: POST /v1/jobs/batch, ${requests} requests of ${JOB_GROUP} paid jobs, ${connections} connections`,
  );
  const started = new Date();
  const createDb = await activity();
  const created: Record<string, number> = {};
  const r = await runLoad('create batch', {
    url: base,
    connections,
    amount: requests,
    maxSeconds: 300,
    steps: [createBatch(created)],
    expect: { create_batch: [200] },
  });
  await settled(db, started);
  const jobs = created['201'] ?? 0;
  const jobsPerS = round(jobs / r.duration_s);
  const ceil = report.ceilings.create_group;
  report.writes.create_batch = {
    ...r,
    group: JOB_GROUP,
    items_by_status: created,
    jobs,
    jobs_per_s: jobsPerS,
    payments_by_status: await paymentStates(db, started),
    ceiling_items_per_s: ceil?.items_per_s,
    ratio: ratio(jobsPerS, ceil?.items_per_s),
  };
  progress(
    `  batch create: ${jobs} paid jobs (items ${JSON.stringify(created)}) = ${jobsPerS} jobs/s; ceiling ${ceil?.items_per_s ?? '–'} jobs/s`,
  );
  report.writes.create_batch.db = await measured(createDb, jobs, r, jobs);

  // The job's state tested so that no partial index of job can serve it (`IS TRUE`, as the
  // service's repositories do): with escrowed payments called rare by the statistics, the
  // planner scanned all of job_dispatch_idx once per payment (33–65 s before this phase
  // at a million payments); now each job is found by its key.
  const { rows: targets } = await db.query<Target>(
    `SELECT p.payment_id, p.client_id FROM job_payments p JOIN job j ON j.job_id = p.job_id
      WHERE p.created_at >= $1 AND p.status = 'escrowed' AND (j.state = 'queued') IS TRUE AND p.client_id LIKE 'bench-client-%'
      ORDER BY p.created_at DESC, p.payment_id DESC LIMIT $2`,
    [started, options.batchSettle],
  );
  if (!targets.length) {
    progress('batch settle: no escrowed payment on a queued job to refund; skipped');
    return true;
  }
  // One request per owner and 500 payments.
  const chunks: { key: string; body: string }[] = [];
  const byClient = new Map<string, Target[]>();
  for (const t of targets) byClient.set(t.client_id, [...(byClient.get(t.client_id) ?? []), t]);
  for (const [clientId, list] of byClient) {
    for (let i = 0; i < list.length; i += SETTLE_GROUP) {
      const items = list
        .slice(i, i + SETTLE_GROUP)
        .map((t) => ({ payment_id: t.payment_id, action: 'refund', reason: 'bench batch refund' }));
      chunks.push({ key: (owners.get(clientId) as Principal).key, body: JSON.stringify({ items }) });
    }
  }
  let nextChunk = 0;
  const settledItems: Record<string, number> = {};
  progress(
    `batch settle: POST /v1/payments/batch refunding ${targets.length} escrowed payments, ${chunks.length} requests of up to ${SETTLE_GROUP}, ${connections} connections`,
  );
  const settleStarted = new Date();
  const settleDb = await activity();
  const s = await runLoad('settle batch', {
    url: base,
    connections,
    amount: chunks.length,
    maxSeconds: 300,
    steps: [
      batchStep(
        'settle_batch',
        '/v1/payments/batch',
        () => chunks[nextChunk++] ?? null,
        settledItems,
        (item) => item.payment?.status === 'refunded',
      ),
    ],
    expect: { settle_batch: [200] },
  });
  await settled(db, settleStarted);
  const refunded = settledItems['200'] ?? 0;
  const perS = round(refunded / s.duration_s);
  const sceil = report.ceilings.settle_group;
  report.writes.settle_batch = {
    ...s,
    group: SETTLE_GROUP,
    payments: targets.length,
    items_by_status: settledItems,
    settlements: refunded,
    settlements_per_s: perS,
    ceiling_items_per_s: sceil?.items_per_s,
    ratio: ratio(perS, sceil?.items_per_s),
  };
  progress(
    `  batch settle: ${refunded}/${targets.length} refunded (items ${JSON.stringify(settledItems)}) = ${perS} settlements/s; ceiling ${sceil?.items_per_s ?? '–'}/s`,
  );
  report.writes.settle_batch.db = await measured(settleDb, refunded, s, refunded);
  return true;
}

// ------------------------------------------------------------------ throughput and p99 against connections

/** Short single POST /v1/jobs runs (paid) at each connection count, for the chart. */
async function measureCurve(base: string, db: Pool, options: Options, createStep: () => Step) {
  const points: (CurvePoint & { non2xx: number; seconds: number; cpu?: Record<string, number> })[] = [];
  progress(
    `connections sweep: POST /v1/jobs (paid) at ${options.curve.join(', ')} connections, ${options.curveSeconds}s each`,
  );
  for (const connections of options.curve) {
    const since = new Date();
    const r = await runLoad(`create@${connections}`, {
      url: base,
      connections,
      duration: options.curveSeconds,
      steps: [createStep()],
      expect: { create: [201] },
    });
    await settled(db, since);
    points.push({
      connections,
      req_per_s: r.req_per_s,
      p50_ms: r.p50_ms,
      p99_ms: r.p99_ms,
      non2xx: r.non2xx,
      seconds: r.duration_s,
      cpu: r.cpu,
    });
  }
  return { points };
}

// ------------------------------------------------------------------ expiry sweep

async function measureSweep(
  db: Pool,
  daemon: BenchDaemon,
  since: Date,
  options: Options,
  env: (port: number, sweeps: boolean) => Record<string, string>,
  logDir: string,
  report: Report,
  releaseCeil: number | undefined,
  profileDir: string | undefined,
) {
  const { rows: set } = await db.query<{ payment_id: string; job_id: string }>(
    `SELECT p.payment_id, p.job_id FROM job_payments p JOIN job j ON j.job_id = p.job_id
      WHERE p.status = 'escrowed' AND j.state = 'queued' AND p.created_at >= $1`,
    [since],
  );
  const count = set.length;
  progress(
    `expiry sweep: starting a coordinator with SWEEPS_ENABLED=true (100 ms interval), then making ${count} escrows due`,
  );
  const sweeper = await startCoordinator(
    'sweeper',
    env(await freePort(), true),
    join(logDir, 'coordinator-sweeper.log'),
    profileDir,
  );
  trackPid('coordinator', sweeper.pid);
  try {
    const heldBefore = new Decimal((await ledgerTotals(daemon)).held);
    const { rows: baseRows } = await db.query(`SELECT coalesce(max(event_id), 0)::bigint AS id FROM payment_events`);
    const baseEvent = baseRows[0].id as string;
    const paymentIds = set.map((r) => r.payment_id);
    const jobIds = set.map((r) => r.job_id);

    const progressOfSweep = await SweepProgress.start(db);
    const client = await db.connect();
    const cpuStart = await cpuSnapshot();
    let t0: number;
    try {
      await client.query('BEGIN');
      await client.query(
        `UPDATE job_payments SET expires_at = now() - interval '1 second' WHERE payment_id = ANY($1::uuid[])`,
        [paymentIds],
      );
      await client.query(`UPDATE job SET expires_at = now() - interval '1 second' WHERE job_id = ANY($1::uuid[])`, [
        jobIds,
      ]);
      await client.query('COMMIT');
      t0 = now();
    } finally {
      client.release();
    }

    let decidedAt: number | undefined;
    let refundedAt: number | undefined;
    let lastLine = 0;
    const deadline = t0 + Math.max(120_000, count * 20);
    let decided = 0;
    let refunded = 0;
    while (now() < deadline) {
      ({ decided, refunded } = await progressOfSweep.poll());
      if (decided >= count && decidedAt === undefined) decidedAt = now();
      if (refunded >= count) {
        refundedAt = now();
        break;
      }
      if (now() - lastLine > 2000) {
        lastLine = now();
        progress(`  sweep: ${decided} decided, ${refunded} refunded at the daemon`);
      }
      await sleep(50);
    }
    const cpu = await cpuSince(cpuStart);
    const heldAfter = new Decimal((await ledgerTotals(daemon)).held);
    const { rows: final } = await db.query(
      `SELECT p.status, j.state, count(*)::int AS n FROM job_payments p JOIN job j ON j.job_id = p.job_id
        WHERE p.payment_id = ANY($1::uuid[]) GROUP BY 1, 2`,
      [paymentIds],
    );
    const batches = await sweepBatches(db, baseEvent);
    report.rss_mb.sweeper_peak_vmhwm = sweeper.rss.hwmMb();
    const seconds = refundedAt ? (refundedAt - t0) / 1000 : undefined;
    const decideSeconds = decidedAt ? (decidedAt - t0) / 1000 : undefined;
    const refundsPerS = seconds ? round(count / seconds) : undefined;
    const result = {
      escrows: count,
      complete: refunded >= count,
      refunded,
      seconds: seconds ? round(seconds, 2) : undefined,
      refunds_per_s: refundsPerS,
      decided_all_after_s: decideSeconds ? round(decideSeconds, 2) : undefined,
      decisions_per_s: decideSeconds ? round(count / decideSeconds) : undefined,
      batches,
      daemon_held_released: heldBefore.minus(heldAfter).toFixed(),
      expected_release: new Decimal(AMOUNT).times(count).toFixed(),
      final_states: final,
      ceiling_tps: releaseCeil,
      ratio: ratio(refundsPerS, releaseCeil),
      decision_ceiling_per_s: report.ceilings.sweep_decisions?.per_s,
      decision_ratio: ratio(batches.decision_rate_per_s, report.ceilings.sweep_decisions?.per_s),
      cpu,
    };
    progress(
      `  sweep: ${refunded}/${count} refunded in ${result.seconds ?? '>' + round((now() - t0) / 1000)}s = ${refundsPerS ?? '-'} refunds/s; ` +
        `decision transactions ≈ ${batches.decision_rate_per_s}/s; daemon hold released ${result.daemon_held_released} BTC (expected ${result.expected_release})`,
    );
    progress(`    cpu: ${renderCpu(cpu)}`);
    return result;
  } finally {
    await sweeper.stop();
  }
}

/**
 * The sweep's decisions and refunds, counted as their transactions commit. Each poll reads
 * only the events finished since the one before, by the event feed's rule (GET /v1/events,
 * `FEED_HORIZON`): in (tx, event_id) order, below the oldest transaction still running, so
 * none is missed or counted twice. Counting every event since the start on each poll cost
 * PostgreSQL about 5.7 ms per poll near the end (20,000 events), 0.04 ms per refund in all,
 * charged to the sweep's own figures.
 */
class SweepProgress {
  private decided = 0;
  private refunded = 0;

  private constructor(
    private readonly db: Pool,
    private cursor: { tx: string; eventId: string },
  ) {}

  /** Starts below every transaction that can still write an event: the horizon now. */
  static async start(db: Pool): Promise<SweepProgress> {
    const { rows } = await db.query<{ tx: string }>(`SELECT (${FEED_HORIZON})::text AS tx`);
    return new SweepProgress(db, { tx: rows[0].tx, eventId: '0' });
  }

  async poll(): Promise<{ decided: number; refunded: number }> {
    const { rows } = await this.db.query<{
      decided: number;
      refunded: number;
      tx: string | null;
      event_id: string | null;
    }>(
      `WITH finished AS (
         SELECT tx, event_id, to_status FROM payment_events
          WHERE tx < (${FEED_HORIZON}) AND (tx, event_id) > ($1::xid8, $2::bigint)),
       last AS (SELECT tx, event_id FROM finished ORDER BY tx DESC, event_id DESC LIMIT 1)
       SELECT count(*) FILTER (WHERE to_status = 'refunding')::int AS decided,
              count(*) FILTER (WHERE to_status = 'refunded')::int AS refunded,
              (SELECT tx::text FROM last) AS tx, (SELECT event_id::text FROM last) AS event_id
         FROM finished`,
      [this.cursor.tx, this.cursor.eventId],
    );
    const row = rows[0];
    this.decided += row.decided;
    this.refunded += row.refunded;
    if (row.tx !== null && row.event_id !== null) this.cursor = { tx: row.tx, eventId: row.event_id };
    return { decided: this.decided, refunded: this.refunded };
  }
}

/**
 * From the audit trail: each sweep batch's decision transaction stamps its `refunding`
 * events with its start time; the batch's settlements follow. The time from a batch's
 * decision to its first `refunded` event bounds the decision transaction (plus one
 * daemon call) from above, which gives a lower bound of the sweep's decision rate.
 */
async function sweepBatches(db: Pool, baseEvent: string) {
  const { rows } = await db.query<{ decided_at: Date; n: number; first_refund: Date | null; last_refund: Date | null }>(
    `WITH d AS (SELECT created_at AS decided_at, count(*)::int AS n FROM payment_events WHERE event_id > $1 AND to_status = 'refunding' GROUP BY created_at),
          r AS (SELECT created_at FROM payment_events WHERE event_id > $1 AND to_status = 'refunded')
     SELECT d.decided_at, d.n,
            (SELECT min(created_at) FROM r WHERE r.created_at > d.decided_at) AS first_refund,
            (SELECT max(created_at) FROM r WHERE r.created_at > d.decided_at AND r.created_at < coalesce((SELECT min(d2.decided_at) FROM d d2 WHERE d2.decided_at > d.decided_at), 'infinity')) AS last_refund
       FROM d ORDER BY d.decided_at`,
    [baseEvent],
  );
  let decideMs = 0;
  let decisions = 0;
  for (const b of rows) {
    if (!b.first_refund) continue;
    decideMs += b.first_refund.getTime() - b.decided_at.getTime();
    decisions += b.n;
  }
  return {
    count: rows.length,
    sizes: rows.map((b) => b.n),
    decision_plus_first_call_ms: rows.map((b) =>
      b.first_refund ? b.first_refund.getTime() - b.decided_at.getTime() : null,
    ),
    settle_ms: rows.map((b) =>
      b.first_refund && b.last_refund ? b.last_refund.getTime() - b.decided_at.getTime() : null,
    ),
    decision_rate_per_s: decideMs > 0 ? round((decisions / decideMs) * 1000) : undefined,
  };
}

/** Waits until the machine's CPUs are < 20 % busy for 3 s in a row (others' work would skew every figure). */
async function waitForIdle(maxSeconds: number): Promise<void> {
  const deadline = Date.now() + maxSeconds * 1000;
  let quiet = 0;
  let said = 0;
  while (Date.now() < deadline) {
    const { busy_pct } = await loadAtStart();
    quiet = busy_pct < 20 * (cpus().length / 2) ? quiet + 1 : 0;
    if (quiet >= 3) return;
    if (Date.now() - said > 15_000) {
      said = Date.now();
      progress(`waiting for an idle machine: ${busy_pct}% CPU busy now`);
    }
  }
  progress(`machine still busy after ${maxSeconds}s; starting anyway`);
}

/** Load average and CPU busy share over one second, before anything starts. */
async function loadAtStart(): Promise<{ loadavg: string; busy_pct: number }> {
  const read = () => {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - v[3] - (v[4] ?? 0), total };
  };
  const a = read();
  await sleep(1000);
  const b = read();
  return {
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    busy_pct: Math.round(((b.busy - a.busy) / (b.total - a.total)) * cpus().length * 100),
  };
}

main()
  .catch(async (error) => {
    process.stderr.write(`\n[bench] FAILED: ${error?.stack ?? error}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    progress(
      'cleaning up: coordinators, wallet daemon, bench databases' +
        (process.env.DATABASE_URL ? '' : ', embedded PostgreSQL'),
    );
    await cleanupAll();
    process.exit(process.exitCode ?? 0);
  });
