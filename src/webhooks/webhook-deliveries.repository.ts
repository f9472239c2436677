import { Injectable } from '@nestjs/common';
import { Transactions, type Sql } from '../database/transactions';
import type { ClaimedDelivery, WebhookAttempt, WebhookDelivery } from './webhook.entities';

/** What one attempt came to, as the worker records it. */
export interface AttemptOutcome {
  delivery_id: string;
  lease_token: string;
  ok: boolean;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface RecordedAttempt {
  delivery_id: string;
  endpoint_id: string;
  status: WebhookDelivery['status'];
  ok: boolean;
  duration_ms: number;
}

export interface DeliveryListRow extends WebhookDelivery {
  type: string;
  attempt_log: (Omit<WebhookAttempt, 'attempted_at'> & { attempted_at: string })[];
}

/** A delivery's latest attempts, newest first, as JSON. */
const ATTEMPT_LOG = `COALESCE((SELECT jsonb_agg(to_jsonb(a) ORDER BY a.attempt DESC)
                               FROM (SELECT * FROM webhook_attempts a WHERE a.delivery_id = d.delivery_id
                                      ORDER BY a.attempt DESC LIMIT 20) a), '[]'::jsonb)`;

/**
 * Owns the webhook outbox tables: webhook_deliveries (one row per event and endpoint,
 * written by the triggers of migration 1764300000000) and webhook_attempts (the log).
 * Reads webhook_events, which only the triggers write.
 */
@Injectable()
export class WebhookDeliveriesRepository {
  constructor(private readonly tx: Transactions) {}

  /**
   * Claims up to `limit` due deliveries of enabled endpoints for one worker, skipping
   * rows another instance holds. The claim is a lease: until `leaseMs` has passed no
   * other worker takes them, and if this one dies they come due again then. Each claim
   * counts as an attempt started. One statement, committed before anything is sent.
   */
  claimDue(limit: number, leaseMs: number, leaseToken: string): Promise<ClaimedDelivery[]> {
    return this.tx.sql.rows<ClaimedDelivery>(
      `WITH due AS (
         SELECT d.delivery_id FROM webhook_deliveries d
          WHERE d.next_attempt_at <= now()
            AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.endpoint_id = d.endpoint_id AND e.enabled)
          ORDER BY d.next_attempt_at
          LIMIT $1
          FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE webhook_deliveries d
            SET attempts = d.attempts + 1, lease_token = $2,
                locked_until = now() + $3::int * interval '1 millisecond',
                next_attempt_at = now() + $3::int * interval '1 millisecond'
           FROM due WHERE d.delivery_id = due.delivery_id
         RETURNING d.delivery_id, d.endpoint_id, d.event_id, d.lease_token, d.attempts)
       SELECT c.*, ev.type, ev.reason, ev.payment, ev.job, ev.created_at AS event_created_at, e.url,
              array_remove(ARRAY[e.secret, CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END], NULL)
                AS secrets
         FROM claimed c JOIN webhook_events ev ON ev.event_id = c.event_id
         JOIN webhook_endpoints e ON e.endpoint_id = c.endpoint_id`,
      [limit, leaseToken, leaseMs],
    );
  }

  /**
   * Records a set of attempts in one transaction, each only if its lease is still this
   * worker's (compare-and-set on the lease token: a worker that overran its lease
   * records nothing). A 2xx is delivered; a failure is due again after the schedule's
   * next delay, or has failed once the schedule is spent. An endpoint's run of failures
   * starts at its first failed attempt and ends with any success; when it has lasted
   * `disableAfterSeconds` the endpoint is disabled and its pending deliveries set
   * aside as failed (a manual retry enables it again).
   */
  recordAttempts(
    outcomes: AttemptOutcome[],
    schedule: number[],
    disableAfterSeconds: number,
  ): Promise<{ recorded: RecordedAttempt[]; disabled: string[] }> {
    return this.tx.run(async (sql) => {
      const recorded = await sql.rows<RecordedAttempt>(
        `WITH o AS (
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::boolean[], $4::int[], $5::text[], $6::int[])
                           AS o(delivery_id, lease_token, ok, status_code, error, duration_ms)),
         done AS (
           UPDATE webhook_deliveries d
              SET status = CASE WHEN o.ok THEN 'delivered'
                                WHEN d.schedule_step < cardinality($7::int[]) THEN 'pending' ELSE 'failed' END,
                  next_attempt_at = CASE WHEN o.ok THEN NULL
                                         WHEN d.schedule_step < cardinality($7::int[])
                                         THEN now() + ($7::int[])[d.schedule_step + 1] * interval '1 second' END,
                  schedule_step = CASE WHEN o.ok THEN d.schedule_step ELSE d.schedule_step + 1 END,
                  delivered_at = CASE WHEN o.ok THEN now() ELSE d.delivered_at END,
                  lease_token = NULL, locked_until = NULL,
                  last_status_code = o.status_code, last_error = o.error, last_attempt_at = now()
             FROM o WHERE d.delivery_id = o.delivery_id AND d.lease_token = o.lease_token
           RETURNING d.delivery_id, d.endpoint_id, d.attempts, d.status, o.ok, o.status_code, o.error, o.duration_ms),
         logged AS (
           INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms, attempted_at)
           SELECT delivery_id, attempts, status_code, error, duration_ms, now() FROM done)
         SELECT delivery_id, endpoint_id, status, ok, duration_ms FROM done`,
        [
          outcomes.map((o) => o.delivery_id),
          outcomes.map((o) => o.lease_token),
          outcomes.map((o) => o.ok),
          outcomes.map((o) => o.status_code),
          outcomes.map((o) => o.error),
          outcomes.map((o) => o.duration_ms),
          schedule,
        ],
      );
      const disabled = await this.noteEndpointHealth(sql, recorded, disableAfterSeconds);
      return { recorded, disabled };
    });
  }

  /** Returns the endpoints it disabled. Writes nothing while an endpoint keeps succeeding. */
  private async noteEndpointHealth(
    sql: Sql,
    recorded: RecordedAttempt[],
    disableAfterSeconds: number,
  ): Promise<string[]> {
    const health = new Map<string, boolean>();
    for (const r of recorded) health.set(r.endpoint_id, (health.get(r.endpoint_id) ?? false) || r.ok);
    if (health.size === 0) return [];
    const changed = await sql.rows<{ endpoint_id: string; enabled: boolean }>(
      `WITH h AS (SELECT * FROM unnest($1::uuid[], $2::boolean[]) AS h(endpoint_id, any_ok))
       UPDATE webhook_endpoints e
          SET failing_since = CASE WHEN h.any_ok THEN NULL ELSE COALESCE(e.failing_since, now()) END,
              enabled = e.enabled AND (h.any_ok OR e.failing_since IS NULL OR e.failing_since > now() - $3::int * interval '1 second'),
              disabled_at = CASE WHEN NOT h.any_ok AND e.failing_since <= now() - $3::int * interval '1 second' THEN now() ELSE e.disabled_at END,
              disabled_reason = CASE WHEN NOT h.any_ok AND e.failing_since <= now() - $3::int * interval '1 second'
                                     THEN 'every attempt failed since ' || to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                                     ELSE e.disabled_reason END,
              updated_at = now()
         FROM h
        WHERE e.endpoint_id = h.endpoint_id
          AND ((h.any_ok AND e.failing_since IS NOT NULL)
               OR (NOT h.any_ok AND e.enabled AND (e.failing_since IS NULL OR e.failing_since <= now() - $3::int * interval '1 second')))
       RETURNING e.endpoint_id, e.enabled`,
      [[...health.keys()], [...health.values()], disableAfterSeconds],
    );
    const disabled = changed.filter((e) => !e.enabled).map((e) => e.endpoint_id);
    if (disabled.length)
      await sql.rows(
        `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                last_error = COALESCE(last_error || '; ', '') || 'endpoint disabled'
          WHERE endpoint_id = ANY($1::uuid[]) AND status = 'pending' AND lease_token IS NULL`,
        [disabled],
      );
    return disabled;
  }

  /** Newest first, with each delivery's latest attempts. */
  listForEndpoint(endpointId: string, beforeSeq: string | null, limit: number): Promise<DeliveryListRow[]> {
    return this.tx.sql.rows<DeliveryListRow>(
      `SELECT d.*, ev.type, ${ATTEMPT_LOG} AS attempt_log
         FROM webhook_deliveries d JOIN webhook_events ev ON ev.event_id = d.event_id
        WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.seq < $2::bigint)
        ORDER BY d.seq DESC LIMIT $3`,
      [endpointId, beforeSeq, limit],
    );
  }

  findForEndpoint(endpointId: string, deliveryId: string): Promise<DeliveryListRow | undefined> {
    return this.tx.sql.one<DeliveryListRow>(
      `SELECT d.*, ev.type, ${ATTEMPT_LOG} AS attempt_log
         FROM webhook_deliveries d JOIN webhook_events ev ON ev.event_id = d.event_id
        WHERE d.endpoint_id = $1 AND d.delivery_id = $2`,
      [endpointId, deliveryId],
    );
  }

  /**
   * Makes a delivery due now. A pending one keeps its place in the schedule; a delivered
   * or failed one gets one more attempt. Not while an attempt is out (its lease holds):
   * the same event is never sent twice at once. False when there is no such delivery.
   */
  async retryNow(sql: Sql, endpointId: string, deliveryId: string, scheduleLength: number): Promise<boolean> {
    const moved = await sql.one<WebhookDelivery>(
      `UPDATE webhook_deliveries d
          SET status = 'pending', next_attempt_at = now(),
              schedule_step = CASE WHEN d.status = 'pending' THEN d.schedule_step ELSE $3::int END
        WHERE d.delivery_id = $2 AND d.endpoint_id = $1 AND (d.lease_token IS NULL OR d.locked_until < now())
       RETURNING *`,
      [endpointId, deliveryId, scheduleLength],
    );
    if (moved) return true;
    return !!(await sql.one(`SELECT 1 FROM webhook_deliveries WHERE delivery_id = $2 AND endpoint_id = $1`, [
      endpointId,
      deliveryId,
    ]));
  }

  /** Deliveries still to make, per endpoint (for the backlog gauge). */
  backlog(): Promise<{ endpoint_id: string; pending: string }[]> {
    return this.tx.sql.rows(
      `SELECT endpoint_id, count(*) AS pending FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL GROUP BY endpoint_id`,
    );
  }
}
