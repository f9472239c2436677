import { DomainError } from '../common/errors';
import { notEscrowed } from '../payments/payment.errors';
import type { PaymentStatus } from '../payments/job-payment.entity';
import { LIVE_JOB_STATES } from '../payments/payment-jobs';
import { invalidTransition } from './job.errors';

/*
 * Extending a job (README "Escrow lifecycle"): who may, and how far, as pure functions
 * over the facts read under the job's row lock. The SQL that moves the deadlines repeats
 * the conditions that make it a compare-and-set (job live, payment escrowed, within the
 * maximum), so a rule checked here can never be raced past.
 */

/** The job and its payment (if any) as read under the job's lock. */
export interface ExtensionFacts {
  /** The database's clock, read with the job. */
  now: Date;
  job: { job_id: string; state: string; requested_at: Date; expires_at: Date };
  payment?: { payment_id: string; status: PaymentStatus; expires_at: Date; escrowed_at: Date | null };
}

/** The operator's maxima, counted from the start: the job's request, the escrow's hold. */
export interface ExtensionLimits {
  jobTtlMaxSeconds: number;
  escrowMaxTimeoutSeconds: number;
}

/** The deadlines after extending by `seconds`. */
export interface ExtensionPlan {
  jobExpiresAt: Date;
  /** Undefined for a job without a payment. */
  escrowExpiresAt?: Date;
}

/**
 * Why extending by `seconds` must be refused, in the order a caller should learn it: the
 * job is final, or past its deadline though not swept yet (409), its payment is not `escrowed` (409: still pending, or already
 * releasing/refunding/settled), the job's deadline would be more than JOB_TTL_MAX_SECONDS
 * after its request, or the escrow's more than ESCROW_MAX_TIMEOUT_SECONDS after its hold
 * (400). Otherwise the new deadlines: both move by exactly `seconds`.
 */
export function planExtension(
  facts: ExtensionFacts,
  seconds: number,
  limits: ExtensionLimits,
): { plan: ExtensionPlan; refusal?: undefined } | { refusal: DomainError; plan?: undefined } {
  const { job, payment } = facts;
  if (!LIVE_JOB_STATES.includes(job.state)) return { refusal: invalidTransition(job.job_id, job.state) };
  // Past its deadline a job is over even before the sweep ends it (a result would be refused too).
  if (job.expires_at.getTime() <= facts.now.getTime()) {
    return {
      refusal: new DomainError(
        'JOB_EXPIRED',
        `Job ${job.job_id} passed its deadline at ${job.expires_at.toISOString()}`,
      ),
    };
  }
  if (payment && payment.status !== 'escrowed') return { refusal: notEscrowed(payment.payment_id, payment.status) };

  const jobExpiresAt = plusSeconds(job.expires_at, seconds);
  const jobRoom = secondsLeft(job.requested_at, limits.jobTtlMaxSeconds, job.expires_at);
  if (jobExpiresAt.getTime() > plusSeconds(job.requested_at, limits.jobTtlMaxSeconds).getTime()) {
    return { refusal: outOfRange('job', seconds, jobRoom, limits.jobTtlMaxSeconds, 'JOB_TTL_MAX_SECONDS') };
  }
  if (!payment) return { plan: { jobExpiresAt } };

  const start = payment.escrowed_at ?? payment.expires_at;
  const escrowExpiresAt = plusSeconds(payment.expires_at, seconds);
  const escrowRoom = secondsLeft(start, limits.escrowMaxTimeoutSeconds, payment.expires_at);
  if (escrowExpiresAt.getTime() > plusSeconds(start, limits.escrowMaxTimeoutSeconds).getTime()) {
    return {
      refusal: outOfRange('escrow', seconds, escrowRoom, limits.escrowMaxTimeoutSeconds, 'ESCROW_MAX_TIMEOUT_SECONDS'),
    };
  }
  return { plan: { jobExpiresAt, escrowExpiresAt } };
}

function plusSeconds(at: Date, seconds: number): Date {
  return new Date(at.getTime() + seconds * 1000);
}

/** Whole seconds a deadline may still move before `max` seconds after `start` (never negative). */
function secondsLeft(start: Date, max: number, deadline: Date): number {
  return Math.max(0, Math.floor((start.getTime() + max * 1000 - deadline.getTime()) / 1000));
}

function outOfRange(what: 'job' | 'escrow', seconds: number, room: number, max: number, setting: string): DomainError {
  const start = what === 'job' ? 'its request' : 'its hold';
  return new DomainError(
    'EXTENSION_OUT_OF_RANGE',
    `Extending by ${seconds} s would put the ${what} deadline more than ${setting} (${max} s) after ${start}`,
    { fields: { seconds: [`at most ${room} more seconds are allowed`] }, max_seconds: room, limit: setting },
  );
}
