import { setTimeout as sleep } from 'node:timers/promises';
import type { TestApp } from './support/app';
import { mapConcurrent, waitFor } from './support/flow';
import { CoordinatorProcess, spawnCoordinator, stopAllCoordinators } from './support/processes';
import { Api, expectStatus, startApp } from './support/payments';
import { WebhookReceiver } from './support/webhook-receiver';

// Webhook delivery across coordinator processes (`node dist/src/main.js`): a SIGKILL
// between a change and its delivery loses nothing, and several instances sharing one
// database never send the same attempt twice.

type Body = any;

/** What every spawned instance runs with: loopback receivers, a quick worker, a short lease (2 × 1 s + 1 s). */
const DELIVERING = {
  WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
  WEBHOOK_DELIVERY_ENABLED: 'true',
  WEBHOOK_POLL_INTERVAL_MS: '20',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_RETRY_SCHEDULE: '1,1,1',
  SWEEPS_ENABLED: 'false',
};

describe('webhooks across coordinator instances', () => {
  let t: TestApp;
  let api: Api;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    // The in-process app only makes the changes; the spawned instances deliver.
    t = await startApp({ WEBHOOK_ALLOW_PRIVATE_URLS: 'true', WEBHOOK_DELIVERY_ENABLED: 'false' });
    api = new Api(t);
  });
  afterAll(async () => {
    await stopAllCoordinators();
    await t?.close();
  });
  beforeEach(async () => {
    receiver = await WebhookReceiver.start();
    const endpoint = expectStatus(
      await t.http.post('/v1/webhook-endpoints').set('X-Api-Key', t.keys.admin).send({ url: receiver.url }),
      201,
      'POST /v1/webhook-endpoints',
    );
    receiver.secrets = [endpoint.secret];
  });
  afterEach(async () => {
    await stopAllCoordinators();
    await api.query(`DELETE FROM webhook_endpoints`);
    await receiver.close();
  });

  /** Every event the outbox holds for the current endpoint, by event id → type. */
  const outbox = async () =>
    new Map(
      (
        await api.query<{ event_id: string; type: string }>(
          `SELECT e.event_id, e.type FROM webhook_events e JOIN webhook_deliveries d USING (event_id)`,
        )
      ).map((r) => [r.event_id, r.type]),
    );

  it('SIGKILL of the instance between a change and its delivery loses nothing', async () => {
    // The receiver takes the first instance's requests and never answers them.
    receiver.answer = () => 'hold';
    const a: CoordinatorProcess = await spawnCoordinator(t, DELIVERING);

    const jobs: Body[] = await mapConcurrent([1, 2, 3, 4], 4, () => api.paidJob('client'));
    await waitFor('the first instance to be sending', async () => receiver.received.length >= 4, 20_000);
    await a.kill();
    // More changes while no instance is running at all.
    expectStatus(await api.cancel('client', jobs[0].job_id), 200, 'cancel');
    await waitFor('the refund', async () => (await api.payment(jobs[0].payment_id)).status === 'refunded');
    const extra = await api.paidJob('client2');

    receiver.answer = () => 204;
    await spawnCoordinator(t, DELIVERING);
    // 5 payments created and escrowed, one refunded and its job canceled.
    const expected = 5 * 2 + 2;
    await waitFor('every event to be delivered', async () => receiver.accepted().size >= expected, 30_000);

    const events = await outbox();
    expect(events.size).toBe(expected);
    const accepted = receiver.accepted();
    expect(new Set(accepted.keys())).toEqual(new Set(events.keys()));
    for (const [id, w] of accepted) {
      expect(w.verifiedBy).toEqual([0]);
      expect(w.body.type).toBe(events.get(id));
    }
    for (const job of [...jobs, extra]) {
      await receiver.waitFor('payment.created', job.payment_id);
      await receiver.waitFor('payment.escrowed', job.payment_id);
    }
    await receiver.waitFor('payment.refunded', jobs[0].payment_id);
    await receiver.waitFor('job.canceled', jobs[0].job_id);
    const undelivered = await api.query(`SELECT 1 FROM webhook_deliveries WHERE status <> 'delivered'`);
    expect(undelivered).toHaveLength(0);
  });

  it('three instances deliver each attempt once', async () => {
    // Every event's first attempt fails, its retry succeeds: each webhook-id arrives exactly twice.
    receiver.answer = (w) => (w.attempt === 1 ? 500 : 200);
    // Small claims so that all three instances take part.
    const env = { ...DELIVERING, WEBHOOK_BATCH_SIZE: '5' };
    await Promise.all([spawnCoordinator(t, env), spawnCoordinator(t, env), spawnCoordinator(t, env)]);

    await mapConcurrent(
      Array.from({ length: 30 }, (_, i) => i),
      6,
      () => api.paidJob('client'),
    );
    await waitFor('60 events delivered', async () => receiver.accepted().size >= 60, 60_000);
    // Anything sent twice would arrive within the next second or so.
    await sleep(1500);

    const attempts = receiver.attemptsById();
    expect(attempts.size).toBe(60);
    expect([...attempts.values()].filter((n) => n !== 2)).toEqual([]);
    expect(receiver.maxInFlightPerId).toBe(1);
    const rows = await api.query<{ status: string; attempts: number; n: string }>(
      `SELECT status, attempts, count(*) AS n FROM webhook_deliveries GROUP BY 1, 2`,
    );
    expect(rows).toEqual([{ status: 'delivered', attempts: 2, n: '60' }]);
  });
});
