import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Partial release (README "Escrow lifecycle"): `job_payments.released_amount` is what a
 * release pays the miner, recorded by the compare-and-set that decides the release (so the
 * re-drive and every retry repeat exactly that settlement); the rest of the escrow goes
 * back to the refund address in the same daemon transaction. NULL means the whole amount
 * (every release decided without an `amount`, and every release before this migration).
 *
 * The webhook trigger copies the payment row into the event as JSON; like `amount`, the
 * new NUMERIC column is carried as exact text rather than a JSON number (which a receiver
 * would parse into a double). The function is the one of 1764300000000-Webhooks with only
 * that object extended.
 */
export class EscrowLifecycle1764500000000 implements MigrationInterface {
  name = 'EscrowLifecycle1764500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE job_payments ADD COLUMN released_amount numeric(20,8)`);
    await q.query(`
      ALTER TABLE job_payments ADD CONSTRAINT job_payments_released_amount_range
        CHECK (released_amount IS NULL OR (released_amount > 0 AND released_amount <= amount))`);
    // Only a release carries a released amount (a refund returns everything).
    await q.query(`
      ALTER TABLE job_payments ADD CONSTRAINT job_payments_released_amount_only_on_release
        CHECK (released_amount IS NULL OR status IN ('releasing','released'))`);
    await q.query(
      webhookPaymentEvents(`jsonb_build_object('amount', p.amount::text, 'released_amount', p.released_amount::text)`),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(webhookPaymentEvents(`jsonb_build_object('amount', p.amount::text)`));
    await q.query(`ALTER TABLE job_payments DROP CONSTRAINT job_payments_released_amount_only_on_release`);
    await q.query(`ALTER TABLE job_payments DROP CONSTRAINT job_payments_released_amount_range`);
    await q.query(`ALTER TABLE job_payments DROP COLUMN released_amount`);
  }
}

/** The payment-event webhook trigger function, with `exactText` merged over the row's JSON. */
function webhookPaymentEvents(exactText: string): string {
  return `
      CREATE OR REPLACE FUNCTION webhook_payment_events() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- Cheap way out (no event, nothing planned beyond this probe) unless some enabled endpoint may see one of these payments.
        IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                        WHERE e.enabled AND (e.client_id IS NULL OR e.client_id IN
                              (SELECT p.client_id FROM new_payment_events n JOIN job_payments p ON p.payment_id = n.payment_id)))
        THEN
          RETURN NULL;
        END IF;
        WITH ev AS MATERIALIZED (
          SELECT gen_random_uuid() AS event_id, n.payment_id, n.reason, n.created_at,
                 CASE n.to_status WHEN 'pending' THEN 'payment.created' WHEN 'escrowed' THEN 'payment.escrowed'
                      WHEN 'released' THEN 'payment.released' WHEN 'refunded' THEN 'payment.refunded'
                      ELSE 'payment.failed' END AS type
            FROM new_payment_events n
           -- releasing/refunding are decisions, not outcomes; failed → failed is a late hold refunded.
           WHERE n.to_status IN ('pending','escrowed','released','refunded','failed')
             AND n.from_status IS DISTINCT FROM n.to_status),
        fan AS MATERIALIZED (
          SELECT ev.event_id, e.endpoint_id
            FROM ev JOIN job_payments p ON p.payment_id = ev.payment_id
            JOIN webhook_endpoints e ON e.enabled AND (e.client_id IS NULL OR e.client_id = p.client_id)
                                    AND ev.type = ANY (e.event_types)),
        events AS (
          INSERT INTO webhook_events (event_id, type, client_id, payment_id, job_id, reason, payment, created_at)
          SELECT ev.event_id, ev.type, p.client_id, p.payment_id, p.job_id, ev.reason,
                 to_jsonb(p) || ${exactText}, ev.created_at
            FROM ev JOIN job_payments p ON p.payment_id = ev.payment_id
           WHERE ev.event_id IN (SELECT event_id FROM fan)
          RETURNING event_id)
        INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at)
        SELECT fan.endpoint_id, fan.event_id, now() FROM fan JOIN events USING (event_id);
        RETURN NULL;
      END $$`;
}
