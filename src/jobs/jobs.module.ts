import { Module } from '@nestjs/common';
import { PaymentsModule } from '../payments/payments.module';
import { JobsController, MinersController } from './jobs.controller';
import { JobsService } from './jobs.service';
import { JobSweeper } from './job.sweeper';

@Module({
  imports: [PaymentsModule],
  controllers: [JobsController, MinersController],
  providers: [JobsService, JobSweeper],
  exports: [JobsService],
})
export class JobsModule {}
