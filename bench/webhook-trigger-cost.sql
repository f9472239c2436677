-- What the webhook outbox triggers (migration 1764300000000-Webhooks) add to a write, in
-- PostgreSQL alone: microseconds per payment_events insert (1 row per statement, and 100
-- rows per statement) and per job entering a final state, with no endpoint, with an
-- endpoint that does not see the change (another client's), and with one that receives
-- it (an event and a delivery written). Best and mean of three rounds.
--
-- It writes rows: run it on a scratch database with the migrations applied, e.g.
--   createdb wh_cost && DATABASE_URL=postgres://…/wh_cost npm run migration:run
--   psql postgres://…/wh_cost -f bench/webhook-trigger-cost.sql
\set QUIET on
INSERT INTO job (job_id, client_id, state, payload, ttl_seconds, requested_at, expires_at, assigned_miner_id, updated_at)
VALUES ('00000000-0000-4000-8000-000000000001', 'c1', 'running', '{"job_type":"x"}', 900, now(), now() + interval '1 day', 'm1', now());
INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address, escrow_timeout_seconds, created_at, updated_at, expires_at)
VALUES ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-000000000001', 'c1', 0.001, 'BTC', 'escrowed', 'a', 'a', 3600, now(), now(), now() + interval '1 day');
CREATE TEMP TABLE results (config text, what text, n int, us_per_op numeric);
CREATE OR REPLACE FUNCTION pg_temp.measure(config text, n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; i int; j record;
BEGIN
  t0 := clock_timestamp();
  FOR i IN 1..n LOOP
    INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
    VALUES ('00000000-0000-4000-8000-0000000000a1', 'pending', 'escrowed', 'bench', 'bench');
  END LOOP;
  INSERT INTO results VALUES (config, 'payment_events insert, 1 row per statement', n, round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 1));
  t0 := clock_timestamp();
  FOR i IN 1..n / 100 LOOP
    INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
    SELECT '00000000-0000-4000-8000-0000000000a1', 'pending', 'escrowed', 'bench', 'bench' FROM generate_series(1, 100);
  END LOOP;
  INSERT INTO results VALUES (config, 'payment_events insert, 100 rows per statement (per row)', n, round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 1));
  -- Fresh jobs, each completed once (as in production: one final transition per job).
  INSERT INTO job (job_id, client_id, state, payload, ttl_seconds, requested_at, expires_at, assigned_miner_id, updated_at)
  SELECT gen_random_uuid(), 'c1', 'running', '{"job_type":"x"}', 900, now(), now() + interval '1 day', 'm1', now()
    FROM generate_series(1, n);
  t0 := clock_timestamp();
  FOR j IN SELECT job_id FROM job WHERE state = 'running' AND job_id <> '00000000-0000-4000-8000-000000000001' LOOP
    UPDATE job SET state = 'completed', finished_at = now() WHERE job_id = j.job_id;
  END LOOP;
  INSERT INTO results VALUES (config, 'job update into a final state, 1 row per statement', n, round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 1));
END $$;
DO $$ BEGIN
  FOR r IN 1..3 LOOP
    DELETE FROM webhook_endpoints;
    PERFORM pg_temp.measure('no endpoint', 2000);
    COMMIT;
    INSERT INTO webhook_endpoints (endpoint_id, client_id, created_by, url, event_types, secret)
    VALUES (gen_random_uuid(), 'other-client', 'x', 'https://h.example/', ARRAY['payment.escrowed','job.completed'], 's');
    PERFORM pg_temp.measure('an endpoint of another client', 2000);
    COMMIT;
    INSERT INTO webhook_endpoints (endpoint_id, client_id, created_by, url, event_types, secret)
    VALUES (gen_random_uuid(), NULL, 'admin', 'https://h.example/', ARRAY['payment.escrowed','job.completed'], 's');
    PERFORM pg_temp.measure('+ an admin endpoint (1 event + 1 delivery written)', 2000);
    COMMIT;
  END LOOP;
END $$;
\set QUIET off
SELECT what, config, min(us_per_op) AS best_us, round(avg(us_per_op), 1) AS avg_us FROM results GROUP BY 1, 2 ORDER BY 1, 3;
