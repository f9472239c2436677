import { Module } from '@nestjs/common';
import { PaymentsModule } from '../payments/payments.module';
import { JobsController, MinersController } from './jobs.controller';
import { JobCreation } from './job-creation.service';
import { JobExtension } from './job-extension.service';
import { JobDispatch } from './job-dispatch.service';
import { JobReports } from './job-reports.service';
import { JobsService } from './jobs.service';
import { JobRepositoryModule } from './job-repository.module';
import { JobSweeper } from './job.sweeper';
import { MinerRepository } from './miner.repository';

@Module({
  imports: [PaymentsModule, JobRepositoryModule],
  controllers: [JobsController, MinersController],
  providers: [JobsService, JobCreation, JobDispatch, JobReports, JobSweeper, MinerRepository, JobExtension],
  exports: [JobsService],
})
export class JobsModule {}
