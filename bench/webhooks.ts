import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { Webhook } from 'standardwebhooks';
import { cpuSince, cpuSnapshot, CpuUse, renderCpu, trackPid, untrackPid } from './cpu';
import { Coordinator, onCleanup, startCoordinator } from './processes';
import { renderProfile, summarizeProfile } from './profile';
import { join } from 'node:path';
import { now, progress, round, sleep } from './util';

/**
 * Webhooks: a local receiver that verifies every request with the `standardwebhooks`
 * library, as a client's would, and counts deliveries per webhook-id.
 */
export class BenchReceiver {
  readonly seen = new Map<string, number>();
  verified = 0;
  rejected = 0;
  requests = 0;
  private verifier: Webhook | undefined;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<BenchReceiver> {
    const server = createServer();
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const receiver = new BenchReceiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => receiver.take(req.headers, Buffer.concat(chunks).toString('utf8'), res));
    });
    onCleanup('webhook receiver', () => receiver.close());
    return receiver;
  }

  useSecret(secret: string): void {
    this.verifier = new Webhook(secret);
  }

  private take(headers: Record<string, string | string[] | undefined>, raw: string, res: ServerResponse): void {
    this.requests++;
    const id = String(headers['webhook-id'] ?? '');
    try {
      this.verifier?.verify(raw, {
        'webhook-id': id,
        'webhook-timestamp': String(headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(headers['webhook-signature'] ?? ''),
      });
      this.verified++;
    } catch {
      this.rejected++;
    }
    this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
    res.statusCode = 204;
    res.end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

/** Registers an admin endpoint for every event type at `receiver`; returns its id. */
export async function registerBenchEndpoint(base: string, adminKey: string, receiver: BenchReceiver): Promise<string> {
  const r = await fetch(`${base}/v1/webhook-endpoints`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': adminKey },
    body: JSON.stringify({ url: receiver.url, description: 'bench receiver' }),
  });
  const body = (await r.json()) as { endpoint_id: string; secret: string };
  if (r.status !== 201) throw new Error(`POST /v1/webhook-endpoints → ${r.status} ${JSON.stringify(body)}`);
  receiver.useSecret(body.secret);
  return body.endpoint_id;
}

export interface WebhookPhaseResult {
  events: number;
  delivered: number;
  /** Deliveries of real payment changes that happened during the phase (not counted in the rate). */
  other_events_delivered: number;
  seconds: number;
  per_s: number;
  verified: number;
  rejected: number;
  sent_twice: number;
  batch_size: number;
  /** CPU of the delivering coordinator per delivery, and what that makes on one core. */
  worker_cpu_ms_per_delivery: number;
  per_s_per_worker_core: number;
  cpu: CpuUse;
}

/**
 * The delivery worker's throughput: `events` events of real payments (row snapshots as
 * the triggers take them) are put in the outbox in one transaction, due at once, for one
 * endpoint; a coordinator of its own, idle and polling, delivers them to a local
 * receiver. Time from the commit to the last delivery recorded.
 */
export async function measureWebhookDelivery(
  db: Pool,
  base: string,
  adminKey: string,
  clientKey: string,
  env: Record<string, string>,
  logFile: string,
  events: number,
  profileDir?: string,
): Promise<WebhookPhaseResult> {
  let payments = Number((await db.query(`SELECT count(*) AS n FROM job_payments`)).rows[0].n);
  if (payments === 0) {
    // Run alone, the phase makes a few real payments to report on (the events cycle over them).
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': clientKey },
        body: JSON.stringify({ payload: { job_type: 'bench' }, payment_amount: '0.001' }),
      });
      if (r.status !== 201) throw new Error(`POST /v1/jobs → ${r.status} ${await r.text()}`);
    }
    payments = 100;
  }
  // Registered after those payments: the outbox holds only this phase's events.
  const receiver = await BenchReceiver.start();
  const endpointId = await registerBenchEndpoint(base, adminKey, receiver);
  const batchSize = Number(env.WEBHOOK_BATCH_SIZE ?? 200);
  const worker: Coordinator = await startCoordinator(
    'webhooks',
    { ...env, WEBHOOK_DELIVERY_ENABLED: 'true', WEBHOOK_POLL_INTERVAL_MS: '50', WEBHOOK_BATCH_SIZE: String(batchSize) },
    logFile,
    profileDir,
  );
  trackPid('webhook worker', worker.pid);
  try {
    progress(`webhooks: ${events} events of ${payments} payments into the outbox, delivered by ${worker.url}`);
    const runTag = randomUUID();
    const client = await db.connect();
    let started: number;
    let cpuStart: Awaited<ReturnType<typeof cpuSnapshot>>;
    try {
      await client.query('BEGIN');
      // Snapshots exactly as the payment_events trigger writes them, cycling over at most `events`
      // payments (after the other phases there are a million). The modulo is taken against a
      // scalar, so the join is a hash join on an expression of g alone, not a nested loop.
      await client.query(
        `WITH first AS (SELECT * FROM job_payments ORDER BY payment_id LIMIT $1),
              p AS (SELECT *, row_number() OVER (ORDER BY payment_id) - 1 AS i FROM first),
         ev AS (
           INSERT INTO webhook_events (event_id, type, client_id, payment_id, job_id, reason, payment, created_at)
           SELECT gen_random_uuid(), 'payment.escrowed', p.client_id, p.payment_id, p.job_id, $3,
                  to_jsonb(p) - 'i' || jsonb_build_object('amount', p.amount::text), now()
             FROM generate_series(0, $1::int - 1) g JOIN p ON p.i = g % (SELECT count(*) FROM first)
           RETURNING event_id)
         INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at)
         SELECT $2, event_id, now() FROM ev`,
        [events, endpointId, `bench ${runTag}`],
      );
      await client.query('COMMIT');
      started = now();
      cpuStart = await cpuSnapshot();
    } finally {
      client.release();
    }
    // The endpoint takes every event, so a payment still changing after the earlier phases
    // (a re-drive, a late settlement) is delivered too: only this phase's tagged events count.
    const countDelivered = async () => {
      const { rows } = await db.query(
        `SELECT count(*) FILTER (WHERE e.reason = $2) AS ours, count(*) FILTER (WHERE e.reason IS DISTINCT FROM $2) AS others
           FROM webhook_deliveries d JOIN webhook_events e USING (event_id)
          WHERE d.endpoint_id = $1 AND d.status = 'delivered'`,
        [endpointId, `bench ${runTag}`],
      );
      return { ours: Number(rows[0].ours), others: Number(rows[0].others) };
    };
    let delivered = 0;
    let others = 0;
    for (;;) {
      ({ ours: delivered, others } = await countDelivered());
      if (delivered >= events) break;
      if (now() - started > 300_000) break;
      worker.assertAlive('webhook delivery');
      await sleep(20);
    }
    const seconds = (now() - started) / 1000;
    const cpu = await cpuSince(cpuStart!);
    const workerMs = (((cpu['webhook worker'] ?? 0) / 100) * seconds * 1000) / Math.max(1, delivered + others);
    const sentTwice = [...receiver.seen.values()].filter((n) => n > 1).length;
    const result: WebhookPhaseResult = {
      events,
      delivered,
      other_events_delivered: others,
      seconds: round(seconds, 2),
      per_s: round(delivered / seconds, 0),
      verified: receiver.verified,
      rejected: receiver.rejected,
      sent_twice: sentTwice,
      batch_size: batchSize,
      worker_cpu_ms_per_delivery: round(workerMs, 3),
      per_s_per_worker_core: round(1000 / workerMs, 0),
      cpu,
    };
    progress(
      `webhooks: ${delivered} of ${events} delivered in ${result.seconds} s = ${result.per_s}/s (goal ≥ 2,000/s: ${
        result.per_s >= 2000 && delivered === events ? 'met' : 'NOT met'
      }); signatures verified ${receiver.verified}, refused ${receiver.rejected}; ids received twice ${sentTwice}${
        others ? `; also delivered ${others} events of live payment changes (not counted)` : ''
      }`,
    );
    progress(
      `  delivering coordinator: ${result.worker_cpu_ms_per_delivery} ms CPU per delivery (≈ ${result.per_s_per_worker_core}/s on one core of its own); cpu: ${renderCpu(cpu)}`,
    );
    await db.query(`DELETE FROM webhook_endpoints WHERE endpoint_id = $1`, [endpointId]);
    return result;
  } finally {
    untrackPid('webhook worker');
    await worker.stop();
    await receiver.close();
    if (profileDir) {
      const profile = summarizeProfile(join(profileDir, 'webhooks.cpuprofile'));
      if (profile) process.stdout.write(`\n${renderProfile(profile)}\n`);
    }
  }
}
