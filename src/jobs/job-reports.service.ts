import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { Coalescer, ItemOutcome } from '../common/coalescer';
import { notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { MetricsService } from '../metrics/metrics.service';
import type { JobPayment } from '../payments/job-payment.entity';
import { cannotSettle } from '../payments/payment.errors';
import { PaymentsService, isUuid } from '../payments/payments.service';
import type { Job } from './job.entity';
import { minerReportRefused } from './job.errors';
import { JobReport, JobRepository } from './job.repository';

/** A miner's report on its job, by its caller. */
export interface MinerReport extends JobReport {
  job_id: string;
  miner_id: string;
}

/** What a job's end decides for its escrowed payment, and which settled outcome is already fine. */
const OUTCOME = {
  completed: { to: 'releasing', reason: 'job_completed', paidIsFine: true },
  failed: { to: 'refunding', reason: 'job_failed', paidIsFine: false },
  canceled: { to: 'refunding', reason: 'job_canceled', paidIsFine: false },
} as const;

/**
 * A job's end as it touches its payment — a miner's result (release) or failure (refund),
 * and a cancellation (refund) — and the coalescing of miners' reports: the reports that
 * arrive while one is in flight are carried out as one transaction (one statement for
 * the jobs, one for the payments' decisions) and one settle-batch call at the daemon.
 */
@Injectable()
export class JobReports {
  private readonly reports: Coalescer<MinerReport, Job>;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly tx: Transactions,
    private readonly payments: PaymentsService,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: JobRepository,
    metrics: MetricsService,
  ) {
    this.reports = new Coalescer<MinerReport, Job>({
      maxGroup: config.coalesceMaxGroup,
      lanes: config.coalesceLanes,
      observer: metrics.coalescerObserver('report'),
      one: (report) => this.reportOne(report),
      many: (reports, handOff) => this.reportMany(reports, handOff),
    });
  }

  /** Assigned miner: running → completed (escrow released to it) or failed (escrow refunded). */
  async report(principal: Principal, jobId: string, report: JobReport): Promise<Job> {
    if (!isUuid(jobId)) throw notFound('job', jobId);
    if (this.recovery.resumeFrom()) return this.resumeDecided(jobId);
    const item = { ...report, job_id: jobId, miner_id: principal.id };
    // A report holding an Idempotency-Key claim records its own recovery point with its claim, so it goes alone.
    if (this.recovery.holdsClaim()) return this.reportOne(item);
    return this.reports.submit(item);
  }

  /**
   * A retried cancel/result/fail whose first attempt died after committing the job's
   * transition: the payment decided with it is carried on to the daemon (same key).
   */
  async resumeDecided(jobId: string): Promise<Job> {
    const payment = await this.payments.findForJob(this.tx.sql, jobId);
    if (payment) await this.payments.settleIfDecided(payment);
    return (await this.jobs.find(this.tx.sql, jobId)) as Job;
  }

  /**
   * Tells Payments how the job ended, inside the job's transaction. An escrowed payment is
   * decided; one that somebody else already settled makes the whole job transition fail
   * (409), except a completion after an admin already paid the miner.
   */
  async decidePayment(sql: Sql, job: Job, end: keyof typeof OUTCOME, actor: string): Promise<JobPayment | undefined> {
    const [decided] = await this.decidePayments(sql, [{ job, end, actor }]);
    return decided;
  }

  private async reportOne(report: MinerReport): Promise<Job> {
    const decided = await this.tx.run(async (sql) => {
      // Results after the deadline are refused even before the sweep has expired the job.
      const job = await this.jobs.report(sql, report.job_id, report.miner_id, report);
      if (!job) throw minerReportRefused(report.job_id, report.miner_id, await this.jobs.find(sql, report.job_id));
      await this.recovery.record(sql, { job_id: job.job_id });
      return this.decidePayment(sql, job, report.to, report.miner_id);
    });
    if (decided) await this.payments.settle(decided);
    return (await this.jobs.find(this.tx.sql, report.job_id)) as Job;
  }

  /**
   * Reports as one set: one transaction moves every job that may move and decides their
   * payments; one settle-batch carries the decisions out; one query reads the jobs back. A
   * refused report gets the error it would have got alone. A report that would fail its
   * whole transaction alone (its payment already settled the other way) throws before
   * anything commits, and the coalescer then carries every report out alone.
   */
  private async reportMany(reports: MinerReport[], handOff?: () => void): Promise<ItemOutcome<Job>[]> {
    // The same job twice in one group: the first goes in the set; each repeat goes alone
    // after it, and so gets the answer it would have got arriving second.
    const seen = new Set<string>();
    const repeated = reports.map((r) => seen.has(r.job_id) || !seen.add(r.job_id));
    const outcomes = await this.reportSet(
      reports.filter((_, i) => !repeated[i]),
      handOff,
    );
    const answers: ItemOutcome<Job>[] = [];
    for (const [i, report] of reports.entries()) {
      if (!repeated[i]) answers.push(outcomes.shift() as ItemOutcome<Job>);
      else
        answers.push(
          await this.reportOne(report).then(
            (value) => ({ value }),
            (error: unknown) => ({ error }),
          ),
        );
    }
    return answers;
  }

  /** Reports on distinct jobs as one set (see `reportMany`); `handOff` is told once the decisions commit. */
  private async reportSet(reports: MinerReport[], handOff?: () => void): Promise<ItemOutcome<Job>[]> {
    const { moved, refused, decided } = await this.tx.run(async (sql) => {
      const moved = new Map((await this.jobs.reportMany(sql, reports)).map((job) => [job.job_id, job]));
      const refused = new Map<string, Error>();
      const unmoved = reports.filter((r) => !moved.has(r.job_id));
      if (unmoved.length) {
        const rows = await this.jobs.findMany(
          sql,
          unmoved.map((r) => r.job_id),
        );
        const now = new Map(rows.map((j) => [j.job_id, j]));
        for (const r of unmoved) refused.set(r.job_id, minerReportRefused(r.job_id, r.miner_id, now.get(r.job_id)));
      }
      const ends = reports.flatMap((r) => {
        const job = moved.get(r.job_id);
        return job ? [{ job, end: r.to, actor: r.miner_id }] : [];
      });
      return { moved, refused, decided: (await this.decidePayments(sql, ends)).filter((p) => p !== undefined) };
    });
    // Committed: from here every failure is the items' outcome, never the group's.
    handOff?.();
    try {
      await this.payments.settleMany(decided);
      const jobs = new Map((await this.jobs.findMany(this.tx.sql, [...moved.keys()])).map((j) => [j.job_id, j]));
      return reports.map((r) => {
        const job = jobs.get(r.job_id);
        return job ? { value: job } : { error: refused.get(r.job_id) ?? notFound('job', r.job_id) };
      });
    } catch (error: unknown) {
      return reports.map((r) => ({ error: refused.get(r.job_id) ?? error }));
    }
  }

  /** `decidePayment` for many jobs: one set statement for every escrowed payment. */
  private async decidePayments(
    sql: Sql,
    ends: { job: Job; end: keyof typeof OUTCOME; actor: string }[],
  ): Promise<(JobPayment | undefined)[]> {
    // job.payment_status mirrors the payment and is exact under the job's row lock.
    // Not escrowed yet: the re-drive worker escrows it and, seeing the job ended, refunds it.
    const escrowed = ends.filter(({ job }) => job.payment_id && job.payment_status === 'escrowed');
    const moved = new Map(
      (
        await this.payments.decide(
          sql,
          escrowed.map(({ job, end, actor }) => ({
            payment_id: job.payment_id as string,
            to: OUTCOME[end].to,
            reason: OUTCOME[end].reason,
            actor,
          })),
        )
      ).map((p) => [p.payment_id, p]),
    );
    const decided: (JobPayment | undefined)[] = [];
    for (const { job, end } of ends) {
      if (!job.payment_id || job.payment_status === 'pending' || job.payment_status === 'failed') {
        decided.push(undefined);
        continue;
      }
      const payment = moved.get(job.payment_id);
      if (payment) {
        decided.push(payment);
        continue;
      }
      const now = (await this.payments.findForJob(sql, job.job_id)) as JobPayment;
      const fine = OUTCOME[end].paidIsFine ? ['releasing', 'released'] : ['refunding', 'refunded'];
      if (!fine.includes(now.status)) throw cannotSettle(now.payment_id, now.status);
      decided.push(undefined);
    }
    return decided;
  }
}
