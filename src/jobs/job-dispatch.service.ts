import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { isValidAddress } from '../common/addresses';
import { Coalescer, ItemOutcome } from '../common/coalescer';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Transactions } from '../database/transactions';
import { RecoveryPoints } from '../idempotency/recovery-points';
import { MetricsService } from '../metrics/metrics.service';
import type { Job } from './job.entity';
import { JobRepository, Poll } from './job.repository';
import { MinerRepository } from './miner.repository';

/**
 * Dispatch: a miner's poll claims the oldest dispatchable job. Fail closed: a job with a
 * payment is dispatchable only while escrowed, and only to a miner registered with a payout
 * address valid for the payment's currency.
 *
 * Concurrent polls are coalesced (README "Batch operations"): the polls waiting while a
 * claim is in flight are carried out by one statement that claims a job for each of them,
 * so the dispatch index is walked once per group, not once per poll. Polls are grouped by
 * the currencies their miners can be paid in, so every job of a group suits every poll in it.
 */
@Injectable()
export class JobDispatch {
  /** One coalescer per set of payable currencies ('' for a miner with no payout address). */
  private readonly groups = new Map<string, Coalescer<Poll, Job | undefined>>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tx: Transactions,
    private readonly recovery: RecoveryPoints,
    private readonly jobs: JobRepository,
    private readonly miners: MinerRepository,
    private readonly metrics: MetricsService,
  ) {}

  async poll(principal: Principal): Promise<Job | undefined> {
    // A retried poll whose first attempt died after claiming a job: that job, not another.
    const resumed = this.recovery.resumeFrom();
    if (resumed) return this.jobs.find(this.tx.sql, resumed.job_id);
    const poll = await this.pollOf(principal.id);
    // A poll holding an Idempotency-Key claim records its own recovery point with its claim, so it goes alone.
    if (this.recovery.holdsClaim()) return this.claimOne(poll);
    return this.coalescerFor(poll.payable).submit(poll);
  }

  /** Who polls, where it is paid, and so which paid jobs it may take. */
  private async pollOf(minerId: string): Promise<Poll> {
    const miner = await this.miners.find(this.tx.sql, minerId);
    if (!miner) return { miner_id: minerId, payable: [], payout_address: null };
    const payable = [...this.config.currencies.values()]
      .filter((c) => isValidAddress(miner.payout_address, c.addressFormat, c.network))
      .map((c) => c.code)
      .sort();
    return { miner_id: minerId, payable, payout_address: miner.payout_address };
  }

  private coalescerFor(payable: string[]): Coalescer<Poll, Job | undefined> {
    const key = payable.join(',');
    let coalescer = this.groups.get(key);
    if (!coalescer) {
      coalescer = new Coalescer<Poll, Job | undefined>({
        maxGroup: this.config.coalesceMaxGroup,
        lanes: this.config.coalesceLanes,
        observer: this.metrics.coalescerObserver('poll'),
        one: (poll) => this.claimOne(poll),
        many: (polls) => this.claimMany(payable, polls),
      });
      this.groups.set(key, coalescer);
    }
    return coalescer;
  }

  /** One poll alone: one statement claims the job and records the payee (`JobRepository.claimNext`). */
  private claimOne(poll: Poll): Promise<Job | undefined> {
    return this.recovery.firstWrite(
      (sql) => this.jobs.claimNext(sql, poll.miner_id, poll.payable, poll.payout_address),
      (job) => (job ? { job_id: job.job_id } : undefined),
    );
  }

  /** Polls of one payable set together: one statement claims a job for each (`JobRepository.claimForEach`). */
  private async claimMany(payable: string[], polls: Poll[]): Promise<ItemOutcome<Job | undefined>[]> {
    const claimed = await this.jobs.claimForEach(this.tx.sql, payable, polls);
    return polls.map((_, i) => ({ value: claimed.get(i) }));
  }
}
