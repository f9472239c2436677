import { Module } from '@nestjs/common';
import { PaymentsModule } from '../payments/payments.module';
import { JobsController, MinersController } from './jobs.controller';
import { JobCreation } from './job-creation.service';
import { JobsService } from './jobs.service';
import { JobRepositoryModule } from './job-repository.module';
import { JobSweeper } from './job.sweeper';
import { MinerRepository } from './miner.repository';

@Module({
  imports: [PaymentsModule, JobRepositoryModule],
  controllers: [JobsController, MinersController],
  providers: [JobsService, JobCreation, JobSweeper, MinerRepository],
  exports: [JobsService],
})
export class JobsModule {}
