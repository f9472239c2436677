import { Injectable } from '@nestjs/common';
import type { Principal } from '../auth/api-keys';
import { DomainError, notFound } from '../common/errors';
import { Sql, Transactions } from '../database/transactions';
import type { JobPayment, PaymentEvent } from './job-payment.entity';
import { JobPaymentsRepository } from './job-payments.repository';
import { isUuid } from './payment-decisions.service';
import { PaymentEventsRepository } from './payment-events.repository';
import { canSeePayment } from './payment-rules';

/** Reads of payments and their audit trail. Others' payments are not found (404), never forbidden. */
@Injectable()
export class PaymentQueries {
  constructor(
    private readonly tx: Transactions,
    private readonly payments: JobPaymentsRepository,
    private readonly events: PaymentEventsRepository,
  ) {}

  async get(principal: Principal, paymentId: string): Promise<JobPayment> {
    const payment = isUuid(paymentId) ? await this.payments.find(this.tx.sql, paymentId) : undefined;
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
