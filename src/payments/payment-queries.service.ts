import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { Coalescer } from '../common/coalescer';
import { DomainError, notFound } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { Sql, Transactions } from '../database/transactions';
import { MetricsService } from '../metrics/metrics.service';
import type { JobPayment, PaymentEvent } from './job-payment.entity';
import { JobPaymentsRepository } from './job-payments.repository';
import { isUuid } from './payment-decisions.service';
import { PaymentEventsRepository } from './payment-events.repository';
import { canSeePayment } from './payment-rules';

/** Reads of payments and their audit trail. Others' payments are not found (404), never forbidden. */
@Injectable()
export class PaymentQueries {
  /**
   * Concurrent reads of payments by id, looked up together: one statement for everyone
   * who asked while the last one was out. Under load a read's cost is mostly the round
   * trip (the query's socket write, its parse, PostgreSQL's execution), not the row.
   * Each group starts after its requests arrived, so a read sees every commit before it.
   */
  private readonly reads: Coalescer<string, JobPayment | undefined>;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: MetricsService,
    private readonly tx: Transactions,
    private readonly payments: JobPaymentsRepository,
    private readonly events: PaymentEventsRepository,
  ) {
    this.reads = new Coalescer<string, JobPayment | undefined>({
      maxGroup: config.coalesceMaxGroup,
      lanes: config.coalesceLanes,
      observer: metrics.coalescerObserver('payment_read'),
      one: (paymentId) => this.payments.find(this.tx.sql, paymentId),
      many: async (paymentIds, handOff) => {
        // Nothing to commit: the next group may start while this one's query is out.
        handOff();
        const found = new Map(
          (await this.payments.findMany(this.tx.sql, [...new Set(paymentIds)])).map((p) => [p.payment_id, p]),
        );
        return paymentIds.map((paymentId) => ({ value: found.get(paymentId) }));
      },
    });
  }

  async get(principal: Principal, paymentId: string): Promise<JobPayment> {
    // PostgreSQL reads a uuid in any case and answers in lower case, the key the group matches on.
    const payment = isUuid(paymentId) ? await this.reads.submit(paymentId.toLowerCase()) : undefined;
    if (!payment || !canSeePayment(principal, payment)) throw notFound('payment', paymentId);
    return payment;
  }

  async getForJob(principal: Principal, jobId: string): Promise<JobPayment> {
    const payment = isUuid(jobId) ? await this.payments.findForJob(this.tx.sql, jobId) : undefined;
    if (!payment || !canSeePayment(principal, payment))
      throw new DomainError('PAYMENT_NOT_FOUND', `Job ${jobId} has no payment`);
    return payment;
  }

  async listEvents(principal: Principal, paymentId: string): Promise<PaymentEvent[]> {
    await this.get(principal, paymentId);
    return this.events.listForPayment(this.tx.sql, paymentId);
  }

  /** What each provider holds now, per currency (admin: GET /v1/providers). */
  heldByProvider(): Promise<{ provider_id: string; currency: string; held: string }[]> {
    return this.payments.heldByProvider(this.tx.sql);
  }

  /** The job's payment, read inside the caller's transaction (after the job lock) or on its own. */
  findForJob(sql: Sql, jobId: string): Promise<JobPayment | undefined> {
    return this.payments.findForJob(sql, jobId);
  }

  /** The payments of these jobs still waiting for their hold. */
  pendingForJobs(jobIds: string[]): Promise<JobPayment[]> {
    return this.payments.pendingOfJobs(this.tx.sql, jobIds);
  }
}
