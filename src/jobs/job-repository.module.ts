import { Global, Module } from '@nestjs/common';
import { PaymentJobs } from '../payments/payment-jobs';
import { JobRepository } from './job.repository';

/**
 * The job table's repository, global so that Payments can inject it as `PaymentJobs` (the
 * interface Payments declares) without importing the jobs module: dependencies keep
 * pointing Jobs → Payments.
 */
@Global()
@Module({
  providers: [JobRepository, { provide: PaymentJobs, useExisting: JobRepository }],
  exports: [JobRepository, PaymentJobs],
})
export class JobRepositoryModule {}
