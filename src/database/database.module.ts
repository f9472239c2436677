import { Global, Injectable, Logger, Module, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../ormconfig';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import { runMigrationsLocked } from './migrations';
import { Transactions } from './transactions';

/** Runs pending migrations at start-up; several instances may start together. */
@Injectable()
export class MigrationRunner implements OnModuleInit {
  private readonly logger = new Logger(MigrationRunner.name);
  constructor(private readonly dataSource: DataSource) {}

  async onModuleInit(): Promise<void> {
    const applied = await runMigrationsLocked(this.dataSource);
    if (applied.length) this.logger.log({ applied }, 'migrations applied');
  }
}

@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => {
        if (!config.databaseUrl) throw new Error('DATABASE_URL: not set and no embedded database was started');
        return dataSourceOptions(config.databaseUrl, config.dbPoolSize);
      },
    }),
  ],
  providers: [MigrationRunner, Transactions],
  exports: [Transactions],
})
export class DatabaseModule {}
