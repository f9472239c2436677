import type { AppConfig } from '../config/app-config';
import { amountOut, iso } from '../common/format';
import type { JobView, MinerView } from './dto/job.dto';
import type { Job, Miner } from './job.entity';

/** The wire form of a job (`JobView` in the OpenAPI document). */
export function toJobView(config: AppConfig, job: Job): JobView {
  return {
    job_id: job.job_id,
    client_id: job.client_id,
    state: job.state,
    payload: job.payload,
    constraints: job.constraints,
    ttl_seconds: job.ttl_seconds,
    requested_at: iso(job.requested_at) as string,
    expires_at: iso(job.expires_at) as string,
    assigned_miner_id: job.assigned_miner_id,
    started_at: iso(job.started_at),
    completed_at: iso(job.finished_at),
    result: job.result ?? null,
    metrics: job.metrics,
    error: job.error,
    payment_id: job.payment_id,
    payment_status: job.payment_status,
    payment_amount: amountOut(config, job.payment_amount, job.payment_currency),
    payment_currency: job.payment_currency,
    updated_at: iso(job.updated_at) as string,
  };
}

export function toMinerView(miner: Miner): MinerView {
  return {
    miner_id: miner.miner_id,
    payout_address: miner.payout_address,
    registered_at: iso(miner.registered_at) as string,
    updated_at: iso(miner.updated_at) as string,
  };
}
