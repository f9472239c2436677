import 'reflect-metadata';
import { DataSource, DataSourceOptions } from 'typeorm';
import { IdempotencyKey } from './src/idempotency/idempotency-key.entity';
import { Job, Miner } from './src/jobs/job.entity';
import { JobPayment, PaymentEvent } from './src/payments/job-payment.entity';
import { PaymentEscrow } from './src/escrow/payment-escrow.entity';
import { Initial1764000000000 } from './src/database/migrations/1764000000000-Initial';
import { IdempotencyLease1764100000000 } from './src/database/migrations/1764100000000-IdempotencyLease';
import { PaymentHistory1764200000000 } from './src/database/migrations/1764200000000-PaymentHistory';
import { Webhooks1764300000000 } from './src/database/migrations/1764300000000-Webhooks';
import { RollupDeltaVacuum1764400000000 } from './src/database/migrations/1764400000000-RollupDeltaVacuum';
import { EscrowLifecycle1764500000000 } from './src/database/migrations/1764500000000-EscrowLifecycle';
import { Reconciliation1764600000000 } from './src/database/migrations/1764600000000-Reconciliation';
import { PaymentProviders1764700000000 } from './src/database/migrations/1764700000000-PaymentProviders';
import { StatementTriggers1764800000000 } from './src/database/migrations/1764800000000-StatementTriggers';
import { DropRedundantClientIndex1764900000000 } from './src/database/migrations/1764900000000-DropRedundantClientIndex';
import { HotUpdateRoom1765000000000 } from './src/database/migrations/1765000000000-HotUpdateRoom';

/**
 * The one source of database options, used by the app (DatabaseModule) and the TypeORM
 * CLI (`npm run typeorm -- migration:show`). `synchronize` is always off: the schema
 * comes only from the committed migrations, which run at start-up under an advisory lock.
 */
export function dataSourceOptions(url: string, poolSize = 10): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: [Job, Miner, JobPayment, PaymentEvent, PaymentEscrow, IdempotencyKey],
    migrations: [
      Initial1764000000000,
      IdempotencyLease1764100000000,
      PaymentHistory1764200000000,
      Webhooks1764300000000,
      RollupDeltaVacuum1764400000000,
      EscrowLifecycle1764500000000,
      Reconciliation1764600000000,
      PaymentProviders1764700000000,
      StatementTriggers1764800000000,
      DropRedundantClientIndex1764900000000,
      HotUpdateRoom1765000000000,
    ],
    synchronize: false,
    migrationsRun: false,
    logging: false,
    // A small pool: PostgreSQL on 2 cores is CPU-bound, 8–10 connections beat 32.
    extra: { max: poolSize, application_name: 'coordinator' },
  };
}

export default new DataSource(
  dataSourceOptions(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coordinator'),
);
