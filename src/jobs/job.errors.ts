import { DomainError } from '../common/errors';
import type { Job } from './job.entity';

/** Why a miner's report on a job was refused, from the job's current row (undefined: no such job). */
export function minerReportRefused(
  jobId: string,
  minerId: string,
  job: Pick<Job, 'state' | 'assigned_miner_id' | 'expires_at'> | undefined,
): DomainError {
  if (!job) return new DomainError('JOB_NOT_FOUND', `job ${jobId} not found`);
  if (job.assigned_miner_id !== minerId)
    return new DomainError('JOB_NOT_ASSIGNED', `Job ${jobId} is not assigned to miner ${minerId}`);
  if (job.state === 'running')
    return new DomainError('JOB_EXPIRED', `Job ${jobId} passed its deadline at ${job.expires_at.toISOString()}`);
  return invalidTransition(jobId, job.state);
}

export const invalidTransition = (jobId: string, state: string) =>
  new DomainError('INVALID_JOB_TRANSITION', `Job ${jobId} is ${state}`, { job_id: jobId, state });
